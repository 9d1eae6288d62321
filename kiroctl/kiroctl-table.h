/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A minimal text table: aligned columns, optional header and colours, the last column cut to fit. */
#pragma once

#include <stdio.h>

#include "macro.h"

typedef struct Table Table;

/* A table with n_columns; the header names come from the first row added with table_add_row(). */
Table *table_new(size_t n_columns);
Table *table_free(Table *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(Table *, table_free);

/* Adds a cell to the current row (rows fill left to right). color is an ANSI sequence or NULL; text NULL
 * or empty is shown as "-". */
int table_add_cell(Table *t, const char *text, const char *color);

/* Prints the table. With header, the first row is the header (underlined when colors); without, it is
 * skipped. width > 0 cuts the last column so that lines fit. */
int table_print(Table *t, FILE *f, bool header, bool colors, unsigned width);

/* Number of rows, header included. */
size_t table_get_rows(Table *t);

/* Display width of UTF-8 text (code points; good enough for our strings). */
size_t utf8_width(const char *s);

#define ANSI_NORMAL     "\x1B[0m"
#define ANSI_GREEN      "\x1B[0;1;32m"
#define ANSI_YELLOW     "\x1B[0;1;33m"
#define ANSI_RED        "\x1B[0;1;31m"
#define ANSI_GREY       "\x1B[0;38;5;245m"
#define ANSI_UNDERLINE  "\x1B[0;4m"
#define ANSI_BOLD       "\x1B[0;1;39m"
