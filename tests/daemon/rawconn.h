/* A bare protocol peer for tests that send what libwcodec-client never
 * would: raw bytes, bad frames, requests out of order. */
#ifndef WDT_RAWCONN_H
#define WDT_RAWCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wcodec.pb-c.h"

int raw_connect(const char *sock);
int raw_send_bytes(int fd, const void *p, size_t n);
int raw_send(int fd, const Wcodec__V1__Request *q);
int raw_hello(int fd);
/* Reads one reply (closing any fds it carries); NULL on EOF or timeout.
 * *eof is set when the daemon closed the connection. */
Wcodec__V1__Reply *raw_recv(int fd, int timeout_ms, int *eof);
/* Descriptors raw_recv has received (and closed), all connections. */
extern unsigned raw_fds_seen;
/* 1 if the daemon closed the connection within timeout_ms. */
int raw_closed(int fd, int timeout_ms);
/* Opens a model on a connection that has said Hello: its id, 0 on error. */
uint64_t raw_open(int fd, const char *path);
/* The daemon's counters, asked on a connection of their own; NULL on error. */
Wcodec__V1__Reply *raw_stats(const char *sock);
/* Sends what the socket takes without blocking, until it has taken all or
 * nothing for 500 ms; returns the bytes sent. */
size_t raw_push(int fd, const uint8_t *b, size_t len);

#endif
