/*
 * weft/version.h - version numbers and the symbol-export macro.
 *
 * Every public header includes this one. WEFT_API marks the functions that the
 * shared library exports; everything else in libweft is hidden.
 */
#ifndef WEFT_VERSION_H
#define WEFT_VERSION_H

#define WEFT_VERSION_MAJOR 0
#define WEFT_VERSION_MINOR 1
#define WEFT_VERSION_PATCH 0
#define WEFT_VERSION_STRING "0.1.0"

#if defined(__GNUC__) || defined(__clang__)
#define WEFT_API __attribute__((visibility("default")))
#else
#define WEFT_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The version of the library actually linked, as "MAJOR.MINOR.PATCH". */
WEFT_API const char *weft_version(void);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_VERSION_H */
