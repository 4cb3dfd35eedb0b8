"""Sphinx extension: author-year labels in the bibliography, to match the author-year citations.

``bibtex_reference_style: author_year`` makes the text cite "(Caron et al., 2018)", but the list on
the bibliography page keeps the labels of its formatting style (``alpha`` by default: "[CBJD18]").
This registers a pybtex label style that writes "Caron et al., 2018" and a formatting style,
``authoryear``, that is ``alpha`` with those labels (same sorting, same entries);
``_config.yml`` selects it with ``bibtex_default_style: authoryear``.
"""
from collections import Counter

from pybtex.plugin import register_plugin
from pybtex.style.formatting.alpha import Style as AlphaStyle
from pybtex.style.labels import BaseLabelStyle


def _surname(person) -> str:
    """A person's last names as plain text, LaTeX accents resolved (``Kr{\\"a}henb{\\"u}hl``)."""
    return " ".join(part.render_as("text") for part in person.rich_prelast_names + person.rich_last_names)


class AuthorYearLabelStyle(BaseLabelStyle):
    """"Krizhevsky, 2009", "Coates and Ng, 2011", "Caron et al., 2018"; a/b/... where two collide."""

    def format_label(self, entry) -> str:
        persons = entry.persons.get("author") or entry.persons.get("editor") or []
        names = [_surname(p) for p in persons]
        if not names:
            who = entry.key
        elif len(names) == 1:
            who = names[0]
        elif len(names) == 2:
            who = f"{names[0]} and {names[1]}"
        else:
            who = f"{names[0]} et al."
        year = entry.fields.get("year", "")
        return f"{who}, {year}" if year else who

    def format_labels(self, sorted_entries):
        labels = [self.format_label(entry) for entry in sorted_entries]
        count, seen = Counter(labels), Counter()
        for label in labels:
            if count[label] == 1:
                yield label
            else:
                yield label + chr(ord("a") + seen[label])
                seen[label] += 1


class AuthorYearStyle(AlphaStyle):
    default_label_style = "authoryear"


register_plugin("pybtex.style.labels", "authoryear", AuthorYearLabelStyle)
register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)


def setup(app):
    return {"parallel_read_safe": True, "parallel_write_safe": True}
