/* extract/lang.h - the language of a document's text, when its format does
 * not declare one: libexttextcat (LibreOffice's N-gram language guesser,
 * Debian's libexttextcat-2.0-0 with the fingerprints of
 * libexttextcat-data) over the first LANG_SAMPLE_BYTES of the text.
 *
 * Cheap and conservative: a guess is kept only when the guesser names
 * exactly one language (it names several when unsure) from at least
 * LANG_MIN_BYTES of text, so a mixed or short document gets no language rather
 * than a wrong one. Thread-safe: the guesser is opened once, on first use,
 * and its calls are serialised (it keeps its output in its handle). */
#ifndef QUARRY_INGESTION_LANG_H
#define QUARRY_INGESTION_LANG_H

#include <stdbool.h>
#include <stddef.h>

/* Where Debian's libexttextcat-data puts its fingerprints and the list of
 * them (fpdb.conf). */
#define LANG_FPDB_DIR "/usr/share/libexttextcat/"
/* Text read to guess: the guesser's own default sample size is 1 KiB;
 * 16 KiB costs a few milliseconds and evens out a title page. */
#define LANG_SAMPLE_BYTES 16384
/* Less text than this gets no guess (a sentence or two of prose). */
#define LANG_MIN_BYTES 120

/* Guesses the language of text[0..len) into out (a tag such as "en",
 * "de", "zh-CN"; outlen bytes). Predicate: false, out "", when there is no
 * confident guess or the guesser or its data is not installed. */
bool lang_detect(const char *text, size_t len, char *out, size_t outlen);

#endif
