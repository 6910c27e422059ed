/* SPDX-License-Identifier: MIT */
/*
 * cli format: results as text for people (the default `--format table`).
 * `--format json` needs nothing from here: it prints the result as it came.
 *
 * Main thread only.  Functions return 0 or -ENOMEM.
 */
#ifndef CORRAL_CLI_FORMAT_H
#define CORRAL_CLI_FORMAT_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

/*
 * A value as one line of text, for a table cell or after "key: ": a string
 * as it is, null as "-", numbers and true/false as JSON writes them, an
 * array of scalars joined by ", ", anything else as compact JSON.  The
 * caller frees it; NULL on -ENOMEM.
 */
char *cli_value_text(const json_t *v);

struct cli_column {
	const char *header;
	const char *key;        /* in each row object */
};

/*
 * rows (an array of objects) as a table: a header line, then one line per
 * row, columns padded to their widest cell and two spaces apart.
 */
int cli_print_table(FILE *f, const json_t *rows, const struct cli_column *cols, size_t ncols);

/*
 * obj as "key: value" lines in the object's order, the values of one level
 * lined up; an object value opens an indented block under its key.
 */
int cli_print_fields(FILE *f, const json_t *obj);

#endif /* CORRAL_CLI_FORMAT_H */
