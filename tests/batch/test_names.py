"""`facefit.batch.names.output_names`: one distinct, stable name per input."""

from facefit.batch.names import output_names


def test_unique_stems_kept():
    assert output_names(["a/x.png", "b/y.jpg", "z.png"]) == ["x", "y", "z"]


def test_equal_stems_told_apart_by_folder_then_suffix_then_hash():
    assert output_names(["a/x.png", "b/x.png", "c/y.png"]) == ["a__x", "b__x", "y"]
    assert output_names(["/d/s/a/x.png", "/d/t/a/x.png"]) == ["s__a__x", "t__a__x"]
    assert output_names(["d/x.png", "d/x.jpg"]) == ["x_png", "x_jpg"]
    upper, lower = output_names(["d/X.png", "d/x.png"])  # one file system may not tell them apart
    assert upper.startswith("X-") and lower.startswith("x-") and upper.lower() != lower.lower()


def test_names_never_collide_case_insensitively():
    sources = ["a/x.png", "b/x.png", "a__x.png", "A/X.PNG", "d/x.png", "d/x.jpg", "d/X.jpg",
               "s3://bucket/a/x.png"]
    names = output_names(sources)
    assert len({n.lower() for n in names}) == len(sources)
    assert names == output_names(sources)  # deterministic


def test_urls_have_folder_parts():
    assert output_names(["s3://b/p/x.png", "s3://b/q/x.png"]) == ["p__x", "q__x"]
