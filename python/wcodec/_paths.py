"""Where libwcodec is. This is the source tree's copy: no install directory,
so the library comes from WCODEC_LIBRARY or the loader's search path. `meson
install` installs a copy generated from _paths.py.in naming the library
directory of the install."""
LIBDIR = None
SOVERSION = '1'
