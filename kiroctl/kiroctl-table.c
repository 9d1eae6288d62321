/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A minimal text table: aligned columns, optional header and colours, the last column cut to fit. */
#include <assert.h>

#include "kiroctl-table.h"

typedef struct Cell {
        char *text;
        const char *color;
} Cell;

struct Table {
        size_t n_columns;
        size_t n_cells;
        Cell *cells;
};

Table *table_new(size_t n_columns) {
        Table *t;

        assert(n_columns > 0);

        t = calloc(1, sizeof(Table));
        if (!t)
                return NULL;
        t->n_columns = n_columns;
        return t;
}

Table *table_free(Table *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n_cells; i++)
                free(t->cells[i].text);
        free(t->cells);
        free(t);
        return NULL;
}

int table_add_cell(Table *t, const char *text, const char *color) {
        Cell *cells;
        char *copy;

        assert(t);

        copy = strdup(isempty(text) ? "-" : text);
        if (!copy)
                return -ENOMEM;
        cells = reallocarray(t->cells, t->n_cells + 1, sizeof(Cell));
        if (!cells) {
                free(copy);
                return -ENOMEM;
        }
        /* One line per row, whatever the text holds. */
        for (char *p = copy; *p; p++)
                if ((unsigned char) *p < ' ' || *p == 0x7f)
                        *p = ' ';
        t->cells = cells;
        t->cells[t->n_cells++] = (Cell) { .text = copy, .color = color };
        return 0;
}

size_t table_get_rows(Table *t) {
        assert(t);
        return (t->n_cells + t->n_columns - 1) / t->n_columns;
}

size_t utf8_width(const char *s) {
        size_t w = 0;
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if ((*p & 0xc0) != 0x80)
                        w++;
        return w;
}

/* Prints at most max display columns of s; cuts with "..." when it does not fit. */
static void print_cut(FILE *f, const char *s, size_t max) {
        size_t w = utf8_width(s), n = 0;
        const unsigned char *p = (const unsigned char *) s;

        if (w <= max) {
                fputs(s, f);
                return;
        }
        if (max < 4) {
                for (size_t i = 0; i < max; i++)
                        fputc('.', f);
                return;
        }
        for (; *p; p++) {
                if ((*p & 0xc0) != 0x80) {
                        if (n == max - 3)
                                break;
                        n++;
                }
                fputc(*p, f);
        }
        fputs("...", f);
}

int table_print(Table *t, FILE *f, bool header, bool colors, unsigned width) {
        _cleanup_free_ size_t *widths = NULL;
        size_t rows, first, total = 0;

        assert(t);
        assert(f);

        rows = table_get_rows(t);
        first = header ? 0 : 1;
        widths = calloc(t->n_columns, sizeof(size_t));
        if (!widths)
                return -ENOMEM;

        for (size_t r = first; r < rows; r++)
                for (size_t c = 0; c < t->n_columns && r * t->n_columns + c < t->n_cells; c++)
                        widths[c] = MAX(widths[c], utf8_width(t->cells[r * t->n_columns + c].text));
        for (size_t c = 0; c < t->n_columns; c++)
                total += widths[c] + (c > 0 ? 1 : 0);

        /* Only the last column gives way, and never below its header. */
        if (width > 0 && total > width) {
                size_t last = t->n_columns - 1, rest = total - widths[last];
                size_t min = rows > 0 ? utf8_width(t->cells[last].text) : 0;
                widths[last] = rest < width ? MAX(width - rest, min) : min;
        }

        for (size_t r = first; r < rows; r++) {
                for (size_t c = 0; c < t->n_columns; c++) {
                        size_t i = r * t->n_columns + c;
                        const Cell *cell;
                        const char *color;
                        bool last = c == t->n_columns - 1;

                        if (i >= t->n_cells)
                                break;
                        cell = t->cells + i;
                        color = colors ? (r == 0 && header ? ANSI_UNDERLINE : cell->color) : NULL;

                        if (c > 0)
                                fputc(' ', f);
                        if (color)
                                fputs(color, f);
                        if (last)
                                print_cut(f, cell->text, widths[c]);
                        else
                                fputs(cell->text, f);
                        /* The header underline spans the padding, as in systemctl. */
                        if (color && !(r == 0 && header))
                                fputs(ANSI_NORMAL, f);
                        if (!last)
                                for (size_t w = utf8_width(cell->text); w < widths[c]; w++)
                                        fputc(' ', f);
                        if (color && r == 0 && header)
                                fputs(ANSI_NORMAL, f);
                }
                fputc('\n', f);
        }
        return 0;
}
