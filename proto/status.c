/* Names of the status codes a reply can carry: libwcodec's WC_E* codes and
 * the daemon's own (wcodec_client.h). Shared by wcodecd and the client. */
#include <wcodec/wcodec_client.h>

const char *wc_client_strerror(int code)
{
    switch (code) {
    case WC_EDENIED: return "permission denied";
    case WC_EPROTO: return "protocol error";
    case WC_EDISCONNECTED: return "not connected to wcodecd";
    case WC_EBUDGET: return "does not fit the daemon's memory budget";
    case WC_ETIMEDOUT: return "timed out waiting for wcodecd";
    case WC_ELIMIT: return "a daemon limit is reached";
    default: return wc_strerror(code);
    }
}
