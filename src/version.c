/* The library's version at run time.  CMake passes the version it read from
 * cmap.h (CMAP_BUILD_VERSION_*); comparing it with the cmap.h this file is
 * compiled against catches an installed older header shadowing the tree's. */
#include "cmap.h"

#include "internal.h"

#if !defined(CMAP_BUILD_VERSION_MAJOR) ||                                      \
    !defined(CMAP_BUILD_VERSION_MINOR) || !defined(CMAP_BUILD_VERSION_PATCH)
#error "build with CMake, which defines CMAP_BUILD_VERSION_* from cmap.h"
#endif

_Static_assert(CMAP_BUILD_VERSION_MAJOR == CMAP_VERSION_MAJOR &&
		   CMAP_BUILD_VERSION_MINOR == CMAP_VERSION_MINOR &&
		   CMAP_BUILD_VERSION_PATCH == CMAP_VERSION_PATCH,
	       "cmap.h on the include path is not the project's version");

CMAP_API const char *cmap_version(void)
{
	return CMAP__XSTR(CMAP_BUILD_VERSION_MAJOR) "." CMAP__XSTR(
	    CMAP_BUILD_VERSION_MINOR) "." CMAP__XSTR(CMAP_BUILD_VERSION_PATCH);
}

CMAP_API int cmap_version_number(void)
{
	return CMAP_BUILD_VERSION_MAJOR * 10000 +
	       CMAP_BUILD_VERSION_MINOR * 100 + CMAP_BUILD_VERSION_PATCH;
}
