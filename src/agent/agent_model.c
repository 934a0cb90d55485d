/* The Messages API loop of `postern agent` (see agent_int.h). */
#include <errno.h>
#include <stdio.h>

#include "agent/agent_int.h"

int agi_model_run(agi *a, const char *api_key, char *err, size_t errlen)
{
	(void)a, (void)api_key;
	snprintf(err, errlen, "the model loop is not built yet");
	return -ENOSYS;
}
