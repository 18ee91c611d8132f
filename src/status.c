/* Status codes: the messages come from the same X-macro as the enum. */
#include "cmap.h"

#include "internal.h"

CMAP_API const char *cmap_strerror(int status)
{
	switch (status) {
#define CMAP__MSG(name, val, msg)                                              \
	case CMAP_##name:                                                      \
		return msg;
		CMAP_STATUS_MAP(CMAP__MSG)
#undef CMAP__MSG
	}
	return "unknown cmap status";
}
