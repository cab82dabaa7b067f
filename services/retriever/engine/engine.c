/* engine.c - the table of retrieval engines (see engine.h). */
#include "engine/engine.h"

#include <stdio.h>
#include <string.h>

/* A new engine is one more line here (and its ops table in its own file). */
const engine_ops_t *const engine_registry[] = {
    &engine_embedded_ops,
    &engine_milvus_ops,
    NULL,
};

const engine_ops_t *engine_find(const char *name) {
  for (size_t i = 0; name && engine_registry[i]; i++)
    if (strcmp(engine_registry[i]->name, name) == 0)
      return engine_registry[i];
  return NULL;
}

const char *engine_names(void) {
  static char names[256];
  if (names[0])
    return names;
  size_t len = 0;
  for (size_t i = 0; engine_registry[i] && len < sizeof names; i++)
    len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", i ? ", " : "",
                            engine_registry[i]->name);
  return names;
}

q_err_t engine_open_ops(engine_t *e, const engine_ops_t *ops, const engine_config_t *cfg,
                        char *err, size_t errlen) {
  memset(e, 0, sizeof *e);
  void *st = NULL;
  q_err_t rc = ops->open(cfg, &st, err, errlen);
  if (rc)
    return rc;
  e->ops = ops;
  e->st = st;
  return 0;
}

q_err_t engine_open(engine_t *e, const char *name, const engine_config_t *cfg, char *err,
                    size_t errlen) {
  const engine_ops_t *ops = engine_find(name);
  if (!ops) {
    memset(e, 0, sizeof *e);
    snprintf(err, errlen, "no retrieval engine is called \"%s\" (there are: %s)",
             name ? name : "", engine_names());
    return Q_EINVAL;
  }
  return engine_open_ops(e, ops, cfg, err, errlen);
}

void engine_close(engine_t *e) {
  if (e && e->ops)
    e->ops->close(e->st);
  if (e)
    memset(e, 0, sizeof *e);
}
