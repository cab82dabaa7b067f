/* limits.c - the limit table as data, for code that lists or looks up
 * limits by name (see limits.h). */
#include "quarry/limits.h"

#include <string.h>

const q_limit_t q_limits[Q_LIMIT_COUNT] = {
#define ROW(name, value, help) {"Q_LIMIT_" #name, value, #value, help},
    Q_LIMITS(ROW)
#undef ROW
};

const q_limit_t *q_limit_find(const char *name) {
  if (!name)
    return NULL;
  const char *bare = strncmp(name, "Q_LIMIT_", 8) == 0 ? name + 8 : name;
  for (size_t i = 0; i < Q_LIMIT_COUNT; i++)
    if (strcmp(q_limits[i].name + 8, bare) == 0)
      return &q_limits[i];
  return NULL;
}
