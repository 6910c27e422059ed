/* SPDX-License-Identifier: MIT */
/*
 * roff: man page output.  See roff.h.
 */
#include "common/roff.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>

void roff_head(FILE *f, const char *name, const char *section, const char *version,
	       const char *manual, const char *what)
{
	fputs(".TH \"", f);
	for (const char *p = name; *p; p++)
		fputc(*p == '-' ? '-' : toupper((unsigned char)*p), f);
	fprintf(f, "\" \"%s\" \"\" \"corral %s\" \"%s\"\n", section, version, manual);
	fputs(".SH NAME\n", f);
	roff_text(f, name);
	fputs(" \\- ", f);
	roff_text(f, what);
	fputc('\n', f);
}

/* One piece of text; bol: at the beginning of an output line. */
static void text(FILE *f, const char *s, bool keep_code_ticks)
{
	bool bol = true, code = false;

	for (const char *p = s; *p; p++) {
		char c = *p;

		if (bol && (c == '.' || c == '\''))
			fputs("\\&", f);
		bol = false;
		switch (c) {
		case '\\':
			fputs("\\e", f);
			break;
		case '-':
			fputs("\\-", f);
			break;
		case '`':
			if (keep_code_ticks) {
				fputc(c, f);
				break;
			}
			fputs(code ? "\\fR" : "\\fB", f);
			code = !code;
			break;
		case '\n':
			fputc('\n', f);
			bol = true;
			/* Indentation of a continued line is not prose. */
			while (p[1] == ' ' && !keep_code_ticks)
				p++;
			break;
		default:
			fputc(c, f);
		}
	}
	if (code)
		fputs("\\fR", f);
}

void roff_text(FILE *f, const char *s)
{
	text(f, s, false);
}

void roff_verbatim(FILE *f, const char *s)
{
	size_t n = strlen(s);

	fputs(".nf\n", f);
	text(f, s, true);
	if (n && s[n - 1] != '\n')
		fputc('\n', f);
	fputs(".fi\n", f);
}

void roff_macro(FILE *f, const char *macro, const char *arg)
{
	fprintf(f, ".%s", macro);
	if (arg) {
		fputc(' ', f);
		text(f, arg, false);
	}
	fputc('\n', f);
}
