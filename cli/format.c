/* SPDX-License-Identifier: MIT */
/* cli format: tables and key: value lines (see format.h). */
#include "cli/format.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static bool is_scalar(const json_t *v)
{
	return !json_is_object(v) && !json_is_array(v);
}

/* Milliseconds are plenty for people: "1.002", "3.5", "12.0". */
static char *real_text(double d)
{
	char buf[64];
	size_t n;

	n = (size_t)snprintf(buf, sizeof(buf), "%.3f", d);
	while (n > 1 && buf[n - 1] == '0' && buf[n - 2] != '.')
		buf[--n] = '\0';
	return strdup(buf);
}

char *cli_value_text(const json_t *v)
{
	const json_t *e;
	size_t i, len = 0;
	char *s, *parts;

	if (!v || json_is_null(v))
		return strdup("-");
	if (json_is_string(v))
		return strdup(json_string_value(v));
	if (json_is_real(v))
		return real_text(json_real_value(v));
	if (!json_is_array(v))
		return json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);

	json_array_foreach(v, i, e)
		if (!is_scalar(e))
			return json_dumps(v, JSON_COMPACT);
	if (json_array_size(v) == 0)
		return strdup("-");
	/* A list of scalars: "a, b, c". */
	parts = NULL;
	json_array_foreach(v, i, e) {
		char *p;

		s = cli_value_text(e);
		p = s ? realloc(parts, len + strlen(s) + 3) : NULL;
		if (!p) {
			free(s);
			free(parts);
			return NULL;
		}
		parts = p;
		len += (size_t)sprintf(parts + len, "%s%s", i ? ", " : "", s);
		free(s);
	}
	return parts;
}

static void free_cells(char **cells, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(cells[i]);
	free(cells);
}

int cli_print_table(FILE *f, const json_t *rows, const struct cli_column *cols, size_t ncols)
{
	size_t nrows = json_array_size(rows), r, c;
	size_t *width;
	char **cells;

	/* Row 0 is the header. */
	cells = calloc((nrows + 1) * ncols, sizeof(*cells));
	width = calloc(ncols, sizeof(*width));
	if (!cells || !width) {
		free(cells);
		free(width);
		return -ENOMEM;
	}
	for (r = 0; r <= nrows; r++) {
		for (c = 0; c < ncols; c++) {
			char **cell = &cells[r * ncols + c];

			*cell = r ? cli_value_text(json_object_get(json_array_get(rows, r - 1),
								   cols[c].key))
				  : strdup(cols[c].header);
			if (!*cell) {
				free_cells(cells, (nrows + 1) * ncols);
				free(width);
				return -ENOMEM;
			}
			if (strlen(*cell) > width[c])
				width[c] = strlen(*cell);
		}
	}
	for (r = 0; r <= nrows; r++) {
		for (c = 0; c < ncols; c++) {
			const char *cell = cells[r * ncols + c];

			/* No padding after the last column: no trailing blanks. */
			if (c + 1 < ncols)
				fprintf(f, "%-*s  ", (int)width[c], cell);
			else
				fprintf(f, "%s\n", cell);
		}
	}
	free_cells(cells, (nrows + 1) * ncols);
	free(width);
	return 0;
}

static int print_fields(FILE *f, const json_t *obj, int indent)
{
	const char *key;
	json_t *v;
	int width = 0;

	json_object_foreach((json_t *)obj, key, v)
		if ((int)strlen(key) > width)
			width = (int)strlen(key);
	json_object_foreach((json_t *)obj, key, v) {
		char *text;

		if (json_is_object(v) && json_object_size(v)) {
			fprintf(f, "%*s%s:\n", indent, "", key);
			if (print_fields(f, v, indent + 2))
				return -ENOMEM;
			continue;
		}
		text = cli_value_text(v);
		if (!text)
			return -ENOMEM;
		fprintf(f, "%*s%s:%*s %s\n", indent, "", key, width - (int)strlen(key), "", text);
		free(text);
	}
	return 0;
}

int cli_print_fields(FILE *f, const json_t *obj)
{
	return print_fields(f, obj, 0);
}
