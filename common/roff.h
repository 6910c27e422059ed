/* SPDX-License-Identifier: MIT */
/*
 * roff: writing man pages (the man macros) from the tables that also make
 * --help and docs/API.md, so the three say the same.  Any thread.
 */
#ifndef CORRAL_COMMON_ROFF_H
#define CORRAL_COMMON_ROFF_H

#include <stdio.h>

/*
 * The page header: .TH NAME SECTION with corral's version, and the NAME
 * section ("name \- what").  name in lower case; the title is upper-cased.
 */
void roff_head(FILE *f, const char *name, const char *section, const char *version,
	       const char *manual, const char *what);

/*
 * Text, escaped: backslashes, '-' (as \-, so options copy and paste), a
 * line starting with '.' or '\''.  `code` spans (as in docs/API.md) become
 * bold; a newline in s stays a line break in the source (filled as prose).
 */
void roff_text(FILE *f, const char *s);

/* The same, each line of s kept as it is (.nf ... .fi). */
void roff_verbatim(FILE *f, const char *s);

/* A macro line: ".SH NAME", ".TP", ...: the argument escaped as text. */
void roff_macro(FILE *f, const char *macro, const char *arg);

#endif /* CORRAL_COMMON_ROFF_H */
