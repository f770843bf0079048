"""The catalogue lists every registered loss term with what it needs and means."""

from translate.losses.base import LOSSES
from translate.losses.catalogue import REQUIRED, catalogue, catalogue_markdown


def test_every_registered_term_is_listed():
    rows = catalogue()  # imports every module, so LOSSES is complete afterwards
    assert [row["name"] for row in rows] == LOSSES.names()
    assert {"perceptual", "style", "shape", "feature_matching", "kl"} <= set(LOSSES.names())
    for row in rows:
        if not row["class"].startswith("translate."):
            continue  # a user's term registered by another test
        assert row["requirement"] and row["meaning"] and row["meaning"] != "-", row
        assert row["formula"] and row["reference"], row


def test_meaning_is_the_classes_own_docstring():
    from translate.losses.base import Term

    class Undocumented(Term):
        pass

    class Documented(Term):
        """Says what it is.

        More detail.
        """

    LOSSES.register("zz_undocumented_for_test")(Undocumented)
    LOSSES.register("zz_documented_for_test")(Documented)
    try:
        rows = {row["name"]: row for row in catalogue()}
        assert rows["zz_undocumented_for_test"]["meaning"] == "-"
        assert rows["zz_documented_for_test"]["meaning"] == "Says what it is."
        assert rows["zz_documented_for_test"]["formula"] == "-"
    finally:  # the registry is global: leave it as found for the other tests
        LOSSES._entries.pop("zz_undocumented_for_test")
        LOSSES._entries.pop("zz_documented_for_test")


def test_parameters_and_defaults():
    rows = {row["name"]: row for row in catalogue()}
    assert rows["kl"]["parameters"] == {"mu": "mu", "logvar": "logvar", "reduction": "sum"}
    assert rows["shape"]["parameters"]["num_classes"] == REQUIRED
    assert rows["shape"]["requirement"] == "pixel-wise labels of the source image"
    assert rows["perceptual"]["parameters"]["weights"] == "imagenet"


def test_markdown_has_a_row_per_term():
    text = catalogue_markdown()
    lines = text.strip().splitlines()
    assert lines[0] == "| name | formula | requirement | reference |"
    body = lines[2:]
    assert len(body) == len(LOSSES.names())
    for name, line in zip(LOSSES.names(), body):
        assert line.startswith(f"| `{name}` |")
        # escaped pipes keep exactly 5 column separators per row
        assert line.replace("\\|", "").count("|") == 5, line
