/* A stand-in for glog's <glog/logging.h>, enough for DietGPU's dietgpu/ans
 * and dietgpu/utils sources (CHECK, CHECK_EQ/NE/LE/LT/GE/GT, each followed
 * by optional `<< message`): prepare.sh installs it as glog/logging.h in
 * the build folder, so that DietGPU builds with nvcc alone, without glog or
 * CMake. Ours (wcodec's), not DietGPU's. A failed check prints the file,
 * line, condition and message, and aborts: the benchmark then exits
 * non-zero, which is what a failed check must do. */
#ifndef WCB_GLOG_STANDIN_H
#define WCB_GLOG_STANDIN_H

#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace wcb_glog {

/* Collects the message of a failed check; its destructor, at the end of the
 * full expression that holds the CHECK, reports and aborts. */
class Fatal {
  public:
    Fatal(const char *file, int line, const char *cond)
    {
        s_ << file << ":" << line << ": check failed: " << cond << " ";
    }
    ~Fatal()
    {
        std::fprintf(stderr, "%s\n", s_.str().c_str());
        std::fflush(stderr);
        std::abort();
    }
    std::ostream &stream() { return s_; }

  private:
    std::ostringstream s_;
};

/* Gives `cond ? (void)0 : Voidify() & stream << ...` one type, void: the
 * operator's precedence, below <<, takes the whole message first (glog's
 * own construction). */
struct Voidify {
    void operator&(std::ostream &) {}
};

} // namespace wcb_glog

#define CHECK(cond)                                                                                \
    (cond) ? (void)0 : wcb_glog::Voidify() & wcb_glog::Fatal(__FILE__, __LINE__, #cond).stream()

/* The operands are evaluated again for the message when the check fails
 * (DietGPU's are plain values). */
#define WCB_CHECK_OP(a, b, op)                                                                     \
    CHECK((a)op(b)) << "(" << (a) << " " #op " " << (b) << ") "

#define CHECK_EQ(a, b) WCB_CHECK_OP(a, b, ==)
#define CHECK_NE(a, b) WCB_CHECK_OP(a, b, !=)
#define CHECK_LE(a, b) WCB_CHECK_OP(a, b, <=)
#define CHECK_LT(a, b) WCB_CHECK_OP(a, b, <)
#define CHECK_GE(a, b) WCB_CHECK_OP(a, b, >=)
#define CHECK_GT(a, b) WCB_CHECK_OP(a, b, >)

#endif
