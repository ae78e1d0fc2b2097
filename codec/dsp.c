/* Chooses the versions of the hot routines for this CPU. */
#include "dsp.h"

#if defined(__x86_64__) && defined(WC_HAVE_AVX2)
void wc_dsp_init_avx2(wc_dsp *d);
#endif
#if defined(__x86_64__) && defined(WC_HAVE_AVX512)
void wc_dsp_init_avx512(wc_dsp *d);
#endif

unsigned wc_cpu_flags(void)
{
    unsigned f = 0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) f |= WC_CPU_AVX2;
    /* gcc's check includes the OS's saving of the AVX-512 state (XCR0) */
    if ((f & WC_CPU_AVX2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl"))
        f |= WC_CPU_AVX512;
#endif
    return f;
}

void wc_dsp_init(wc_dsp *d, unsigned flags)
{
    wc_dsp_init_ref(d);
#if defined(__x86_64__) && defined(WC_HAVE_AVX2)
    if (flags & WC_CPU_AVX2) wc_dsp_init_avx2(d);
#if defined(WC_HAVE_AVX512)
    if ((flags & WC_CPU_AVX2) && (flags & WC_CPU_AVX512)) wc_dsp_init_avx512(d);
#endif
#else
    (void)flags;
#endif
}
