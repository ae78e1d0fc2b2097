/* wc_version(): the library's version, from the generated wcodec/version.h. */
#include "wcodec/wcodec.h"

const char *wc_version(void) { return WC_VERSION_STRING; }
