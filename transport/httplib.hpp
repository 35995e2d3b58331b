#pragma once
// cpp-httplib as Debian compiles its library: the header's feature macros
// must match the library's, or their types differ. Include this, never
// <httplib.h> directly.
#define CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_ZLIB_SUPPORT
#define CPPHTTPLIB_BROTLI_SUPPORT
#include <httplib.h>
