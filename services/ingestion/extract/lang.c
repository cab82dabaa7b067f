/* extract/lang.c - language guessing with libexttextcat (see lang.h). */
#include "extract/lang.h"

#include "quarry/log.h"
#include "quarry/text.h"

#include <libexttextcat/textcat.h>
#include <pthread.h>
#include <string.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static void *guesser; /* NULL: not installed; detection is off */

static void open_guesser(void) {
  guesser = special_textcat_Init(LANG_FPDB_DIR "fpdb.conf", LANG_FPDB_DIR);
  /* Its default minimum is one byte: "ok" comes out as Slovak. Below this
   * it says SHORT, which is no guess. */
  if (guesser)
    textcat_SetProperty(guesser, TCPROP_MINIMUM_DOCUMENT_SIZE, LANG_MIN_BYTES);
  if (!guesser)
    q_log_warn("ingestion: language guessing is off", "{s:s}", "reason",
               "libexttextcat-data's " LANG_FPDB_DIR "fpdb.conf cannot be read");
}

bool lang_detect(const char *text, size_t len, char *out, size_t outlen) {
  if (outlen)
    out[0] = '\0';
  pthread_once(&once, open_guesser);
  if (!guesser || !text || !len || outlen < 2)
    return false;
  /* Whole characters only: the guesser reads UTF-8 fingerprints. */
  len = q_text_cut(text, len, LANG_SAMPLE_BYTES);
  char tag[64] = "";
  pthread_mutex_lock(&mu);
  const char *r = textcat_Classify(guesser, text, len);
  /* One candidate: "[en--utf8]"; several ("[en--utf8][de--utf8]") or
   * "SHORT" / "UNKNOWN": no guess. */
  if (r && r[0] == '[' && strchr(r + 1, '[') == NULL) {
    const char *end = strstr(r, "-utf8]");
    size_t n = end ? (size_t)(end - r - 1) : 0;
    if (n && n < sizeof tag) {
      memcpy(tag, r + 1, n);
      tag[n] = '\0';
    }
  }
  pthread_mutex_unlock(&mu);
  /* "en-" (no country) -> "en"; "zh-CN-" -> "zh-CN". */
  size_t n = strlen(tag);
  while (n && tag[n - 1] == '-')
    tag[--n] = '\0';
  if (!n || n >= outlen)
    return false;
  memcpy(out, tag, n + 1);
  return true;
}
