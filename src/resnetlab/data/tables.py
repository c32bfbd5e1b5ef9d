"""Label tables: a CSV (or a text file of cells separated by spaces) that names a folder's
image files and the class of each.

Many image sets come as one folder of images and a table of their labels (Kaggle's
``train/`` beside ``train.csv``, a labelling tool's export) rather than a folder per
class. ``label_table`` finds the table of such a folder (a .csv, a .tsv, or a .txt file
whose rows name its images) and ``read_label_table`` reads it: the column naming the files
is the one whose values name the folder's images (as a relative path or a file name, with
or without its suffix), the column of classes is the other one, or the one headed
``label``, ``class``, ``category``..., or one-hot columns (one column per class, a single 1
in each row). ``named_classes`` names numbered classes by a JSON map beside the table or elsewhere
in its data set.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path, PurePosixPath

from ..errors import DataError, readable

TABLE_SUFFIXES = (".csv", ".tsv")
# Tables saved as text: Excel's "Unicode Text" and many data sets' labels are .txt files, as
# are READMEs; one is a table only where its rows name the images.
TEXT_SUFFIX = ".txt"
# Headers of the column of classes, where the table has more columns than the files' and it.
LABEL_HEADERS = (
    "label",
    "labels",
    "class",
    "classes",
    "class_name",
    "classname",
    "category",
    "target",
    "breed",
    "species",
    "diagnosis",
    "dx",  # HAM10000's metadata: the diagnosis
    "y",
)
MOST_ROWS_UNMATCHED = 0.5  # past this share of rows naming no image, the table is refused


def _words(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _tables_in(where: Path) -> list[Path]:
    """The tables in ``where`` by their names: its .csv, .tsv and .txt files (a .txt file is
    a table only where it names the images: ``_is_table_of``), never a submission's; one in
    a folder of its own name, as Windows's "Extract All" unpacks Kaggle's ``train.csv.zip``
    (``train.csv/train.csv``), from there."""
    try:
        entries = listing(where)
    except OSError:
        return []
    found = []
    for e in entries:
        suffix = os.path.splitext(e.name)[1].lower()
        if e.name.startswith(".") or _submission(e.name):
            continue
        if suffix in (*TABLE_SUFFIXES, TEXT_SUFFIX) and e.is_file():
            found.append(Path(e.path))
        elif suffix in TABLE_SUFFIXES and e.is_dir() and (inner := Path(e.path, e.name)).is_file():
            found.append(inner)
    return sorted(found)


def _is_table_of(table: Path, folder: Path, paths: list[str]) -> bool:
    """Whether ``table`` may label the images ``paths`` of ``folder``: a .csv or .tsv file
    may; a .txt file where it is a table of them, of two columns or more, one of which names
    one of them in most of its rows. Prose (README.txt, LICENSE.txt) never is, and is left
    unsaid."""
    if table.suffix.lower() != TEXT_SUFFIX:
        return True
    if not paths:
        return False
    try:
        rows = _rows(table)
    except DataError:
        return False
    if (width := max(map(len, rows), default=0)) < 2:
        return False
    image_of = _image_finder(folder, paths)
    named = [
        sum(c < len(row) and image_of(row[c]) is not None for row in rows) for c in range(width)
    ]
    return max(named) * 2 > len(rows)


def _submission(name: str) -> bool:
    """Whether a table is a submission's (Kaggle's ``sample_submission.csv``): the test
    images and a class or score to replace, never their labels."""
    return "submission" in _words(name)


def unread_table(folder: Path, paths: list[str]) -> Path | None:
    """Of the tables in ``folder``, none of which labels the split folders beside them, the
    one an error names as the labels not read: one named for training or for labels
    (``y_train.csv``) before the others, by name; never a submission's, nor a .txt file
    that names none of ``paths``, the images in those folders (``_is_table_of``: a
    README.txt)."""
    tables = sorted(
        (t for t in _tables_in(folder) if _is_table_of(t, folder, paths)),
        key=lambda t: re.search("train|label", _words(t.stem)) is None,
    )
    return tables[0] if tables else None


def is_table_name(name: str) -> bool:
    """Whether a file or folder is named as a table is (``train.csv``): a folder so named
    holds a table (``_tables_in``), never a split."""
    return os.path.splitext(name)[1].lower() in TABLE_SUFFIXES


# Words a folder of images is named by besides its split's: Kaggle's train_images/ (beside
# train.csv), train_img/.
IMAGE_WORDS = ("images", "image", "imgs", "img", "photos", "pictures", "pics")


def _folder_names(folder: Path) -> set[str]:
    """The names a table beside ``folder`` may be named by (as ``_words``): its own, and
    its own without a word saying it holds images (``train`` for ``train_images/``); for a
    folder named as images alone (Plant Pathology's ``images/``), the training split's."""
    words = [w for w in re.split(r"[-_. ]+", folder.name) if w]
    bare = [w for w in words if w.lower() not in IMAGE_WORDS]
    return {n for n in (_words(folder.name), _words("".join(bare)) or "train") if n}


def label_table(folder: Path, paths: list[str]) -> Path | None:
    """The table of ``folder``'s labels (``paths``, its images, those a .txt file must name):
    the one table in it, else the one beside it named for it (``train.csv``,
    ``train_labels.csv`` or ``trainLabels.csv`` for ``train/`` or ``train_images/``) or for
    labels (``labels.csv``); of several in it, the one named for it, for training or for
    labels; None where there is none of these."""
    inside = [t for t in _tables_in(folder) if _is_table_of(t, folder, paths)]
    if len(inside) == 1:
        return inside[0]
    if inside:  # plant-pathology's train.csv beside test.csv and sample_submission.csv
        return next(iter(_named_for(inside, _folder_names(folder) | {"train"})), None)
    beside = _named_for(_tables_in(folder.parent), _folder_names(folder))
    return next((t for t in beside if _is_table_of(t, folder, paths)), None)


def may_have_label_table(folder: Path) -> bool:
    """Whether ``folder`` may have a label table, by the names of the files in it and beside
    it alone: what is looked at before listing all its images for ``label_table``."""
    return bool(_tables_in(folder) or _named_for(_tables_in(folder.parent), _folder_names(folder)))


def sibling_table(folder: Path) -> Path | None:
    """The table beside ``folder`` named for a folder beside it (``train.csv`` for
    ``train/``, beside a ``test/`` given alone), by names alone; None without one."""
    tables = _tables_in(folder.parent)
    try:
        siblings = [e for e in listing(folder.parent) if e.is_dir() and e.name != folder.name]
    except OSError:
        return None
    for sibling in sorted(siblings, key=lambda e: e.name):
        named = _named_for(tables, _folder_names(Path(sibling.path)))
        if named and not sibling.name.startswith("."):
            return named[0]
    return None


def _named_for(tables: list[Path], names: set[str]) -> list[Path]:
    """The ``tables`` named for one of ``names`` (as ``_words``) or for labels, in the order
    they are taken: the exact name first (train.csv), then the shortest (train_labels.csv
    before train_labels_v2.csv), labels.csv last."""
    named = [
        t
        for t in tables
        if any(_words(t.stem).startswith(n) for n in names) or _words(t.stem) == "labels"
    ]
    return sorted(
        named, key=lambda t: (_words(t.stem) not in names, _words(t.stem) == "labels", len(t.stem))
    )


def labels_images(folder: Path, paths: list[str]) -> bool:
    """Whether ``folder`` has a label table (``label_table``) that labels images of
    ``paths``: what makes a folder of images without class folders a split of its own."""
    table = label_table(folder, paths)
    if table is None or not paths:
        return False
    try:
        read_label_table(folder, table, paths)
    except DataError:
        return False
    return True


# What the folder scan under way (``read_once``) has read: the tables, by path, size and time
# of change, as the decoding cache keys a table: their rows, or why they are none; and the
# folders listed, by path: their entries.
_READ: ContextVar[
    dict[tuple[str, int, int] | str, list[list[str]] | str | list[os.DirEntry]] | None
] = ContextVar("tables_read", default=None)


@contextmanager
def read_once(read: dict | None = None) -> Iterator[dict]:
    """A scope in which each table is read once and each folder listed once (``listing``),
    into ``read`` (the scope's around it by default, else a new one): a scan of a folder
    looks at its table and its files several times (which folders are splits, which table
    labels them, the classes it gives), and a folder's splits are scanned again when
    loaded, given the ``read`` yielded here."""
    read = _READ.get() if read is None else read
    token = _READ.set({} if read is None else read)
    try:
        yield _READ.get()
    finally:
        _READ.reset(token)


def listing(folder: Path) -> list[os.DirEntry]:
    """The entries of ``folder`` (``os.scandir``: each with its type and, once asked, its
    stat), listed once in a ``read_once`` scope; a folder that cannot be listed raises its
    ``OSError`` each time."""
    if (read := _READ.get()) is None:
        return _scandir(folder)
    key = os.fspath(folder)
    if key not in read:
        read[key] = _scandir(folder)
    return list(read[key])  # a copy: the caller's to sort


def _scandir(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return list(it)


def _rows(table: Path) -> list[list[str]]:
    """The table's rows of cells, stripped (``_read_rows``), read once in a ``read_once``
    scope."""
    if (read := _READ.get()) is None:
        return _read_rows(table)
    try:
        st = table.stat()
    except OSError:
        return _read_rows(table)  # which says why it cannot be read
    key = (str(table), st.st_size, st.st_mtime_ns)
    if key not in read:
        try:
            read[key] = _read_rows(table)
        except DataError as e:
            read[key] = str(e)
    if isinstance(rows := read[key], str):
        raise DataError(rows)
    return rows


def _read_rows(table: Path) -> list[list[str]]:
    """The table's rows of cells, stripped; one line for a table that is no text table."""
    try:
        data = table.read_bytes()
    except OSError as e:
        raise DataError(f"{table}: cannot read the label table ({e.strerror or e})") from None
    # Excel's "Unicode Text" is UTF-16 with its byte order mark; else UTF-8 (a mark or
    # none), else Latin-1, which decodes any bytes.
    utf16 = data.startswith((b"\xff\xfe", b"\xfe\xff"))
    for encoding in ("utf-16",) if utf16 else ("utf-8-sig", "latin-1"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise DataError(f"{table}: not a text table of labels (its UTF-16 text is cut short)")
    if "\0" in text:
        raise DataError(f"{table}: not a text table of labels (it holds binary data)")
    # Excel's line naming the separator, first: "sep=;"
    separator = {}
    if m := re.match(r"sep=(.)\r?\n", text.lstrip("\ufeff"), re.I):
        text, separator = text.lstrip("\ufeff")[m.end() :], {"delimiter": m[1]}
    try:
        dialect = csv.Sniffer().sniff(text[:65536], delimiters=",;\t")
    except csv.Error:  # one column, or too little to tell: a comma, or a tab for .tsv
        dialect = csv.excel_tab if table.suffix.lower() == ".tsv" else csv.excel
    try:
        # newline=None: lines that end in a CR alone (Excel's "CSV (Macintosh)") are lines
        lines = io.StringIO(text, newline=None)
        rows = [[cell.strip() for cell in row] for row in csv.reader(lines, dialect, **separator)]
    except csv.Error as e:
        raise DataError(f"{table}: not a table of labels ({e})") from None
    rows = [row for row in rows if any(row)]
    if not separator and all(len(row) == 1 for row in rows):
        return _by_spaces(rows) or rows
    return rows


def _by_spaces(rows: list[list[str]]) -> list[list[str]] | None:
    """Rows of one cell each (no comma, semicolon or tab in them) as a table whose cells are
    separated by spaces, as ``name label`` tables and CUB-200-2011's ``images.txt`` (``1
    001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg``) are: split at every run
    of spaces where each line splits into as many cells, else at the first (a class of
    several words, ``golden retriever``); None where most lines are one word."""
    split = [row[0].split() for row in rows]
    if sum(len(cells) > 1 for cells in split) * 2 <= len(split):
        return None
    if len({len(cells) for cells in split}) == 1:
        return split
    return [row[0].split(None, 1) for row in rows]


def _image_keys(folder: Path, paths: list[str], *, fold: bool = False) -> dict[str, str]:
    """The names a table may give each image by: its path relative to ``folder`` and its
    file name, each with and without its suffix (where no other image shares them); with
    ``fold``, in lower case (``casefold``)."""
    keys: dict[str, str | None] = {}
    for path in paths:
        relative = PurePosixPath(Path(path).relative_to(folder).as_posix())
        names = {str(relative), str(relative.with_suffix("")), relative.name, relative.stem}
        for key in names:
            key = readable(key).casefold() if fold else readable(key)
            keys[key] = None if keys.get(key, path) != path else path  # None: ambiguous
    return {k: v for k, v in keys.items() if v is not None}


def _image_finder(folder: Path, paths: list[str]) -> Callable[[str], str | None]:
    """The image of ``paths`` (under ``folder``) that a table's cell names, or None."""
    keys, folded = _image_keys(folder, paths), _image_keys(folder, paths, fold=True)

    def image_of(cell: str) -> str | None:
        # A table made on Windows or macOS may spell a name in another case (IMG_1.JPG)
        key = _file_key(cell, folder)
        return keys.get(key) or folded.get(key.casefold())

    return image_of


def _file_key(value: str, folder: Path) -> str:
    """A table's cell as an image's key: ``./`` and the folder's own name in front dropped
    (``train/cat.1.jpg`` in a table beside ``train/``), Windows separators as ``/``."""
    value = value.replace("\\", "/").removeprefix("./")
    return readable(value.removeprefix(f"{folder.name}/"))


def _one_hot(rows: list[list[str]], columns: list[int]) -> bool:
    ones = {"1", "1.0", "1.00"}
    return all(
        all(row[c] in ones or row[c] in ("0", "0.0", "0.00") for c in columns)
        and sum(row[c] in ones for c in columns) == 1
        for row in rows
    )


def read_label_table(
    folder: Path, table: Path, paths: list[str], *, headed: bool = False
) -> tuple[list[str], list[str], list[str]]:
    """The images of ``paths`` (found under ``folder``) that ``table`` labels, their labels
    (as the table writes them) and notes on what it left out. ``headed``: only a column
    headed as classes are (``LABEL_HEADERS``) or one-hot columns give the classes.

    Raises:
        DataError: a table whose columns name none of the images, or no column of classes
            to be told among several, or whose rows mostly name no image.
    """
    rows = _rows(table)
    if not rows:
        raise DataError(f"{table}: the label table is empty; give a row per image: file,label")
    width = max(len(row) for row in rows)
    rows = [row + [""] * (width - len(row)) for row in rows]
    image_of = _image_finder(folder, paths)
    files = _file_column(table, folder, rows, paths, image_of)
    header = image_of(rows[0][files]) is None
    names = rows[0] if header else [""] * width  # a table of no header row: columns by place
    body = rows[1:] if header else rows
    labels_of, how = _label_column(table, body, names, files, header, headed)
    labelled, labels, unmatched = [], [], []
    unlabelled: set[str] = set()  # images of a row without a class
    seen: dict[str, str] = {}  # each image's class, by its first row
    repeated: set[str] = set()
    other_class: set[str] = set()  # images listed again with another class: multi-label
    for row in body:
        path = image_of(row[files])
        label = labels_of(row)
        if "\n" in label:  # a quote left open takes in the lines after it, as one cell
            raise DataError(
                f"{table}: the class of {row[files]!r} runs over {label.count(chr(10)) + 1:,} "
                f'lines ({label[:40]!r}...), from a quote (") that is not closed; close it or '
                "remove it"
            )
        if path is None:
            unmatched.append(row[files])
        elif not label:
            unlabelled.add(path)
        elif path in seen:
            repeated.add(path)
            if seen[path] != label:
                other_class.add(path)
        else:
            seen[path] = label
            labelled.append(path)
            labels.append(label)
    if len(unmatched) > MOST_ROWS_UNMATCHED * len(body):
        raise DataError(
            f"{table}: {len(unmatched):,} of its {len(body):,} rows name no image in {folder} "
            f"(the first: {unmatched[0]!r}); is it the table of another folder?"
        )
    notes = [f"classes from {table.name}: {how}, the files in {_column(names, files, header)}"]
    notes += _class_notes(set(labels))
    if unmatched:
        notes.append(
            f"{len(unmatched):,} rows of {table.name} name no image in {folder.name}/ (the "
            f"first: {unmatched[0]!r}): left out"
        )
    # An image whose other row gives its class is not left out
    if unlabelled := unlabelled - seen.keys():
        notes.append(f"{len(unlabelled):,} images of {table.name} are given no class: left out")
    if repeated:
        multi = ""
        if other_class:
            multi = (
                f", {len(other_class):,} of them with another class there (a table of several "
                "labels an image: here each image is of one class)"
            )
        notes.append(
            f"{len(repeated):,} images listed more than once in {table.name}: the first row's "
            f"class taken{multi}"
        )
    if left := len(paths) - len(seen) - len(unlabelled):
        notes.append(f"{left:,} images in {folder.name}/ that {table.name} does not list: left out")
    return labelled, labels, notes


class NoImageLabelled(DataError):
    """A table that gives none of the images a class: it names none of them (a table of
    another folder's), or no class (Kaggle's test.csv of the test images' ids)."""


def _file_column(
    table: Path,
    folder: Path,
    rows: list[list[str]],
    paths: list[str],
    image_of: Callable[[str], str | None],
) -> int:
    """The column whose cells name the most images (``image_of``); refused in one line where
    none names any: a table of the images under another suffix says so."""
    width = len(rows[0])
    matched = [sum(image_of(row[c]) is not None for row in rows) for c in range(width)]
    files = max(range(width), key=lambda c: matched[c])
    if matched[files]:
        return files
    for row in rows:  # a0.jpg for the a0.png converted since: say so, not "none"
        for cell in row:
            stem = str(PurePosixPath(_file_key(cell, folder)).with_suffix(""))
            if PurePosixPath(cell).suffix and (image := image_of(stem)) is not None:
                raise DataError(
                    f"{table}: it names the images with another suffix ({cell} for "
                    f"{Path(image).name}); write their names as they are in {folder}"
                )
    example = Path(paths[0]).name if paths else "(no images)"
    raise NoImageLabelled(
        f"{table}: none of its columns names the images in {folder} (as {example} or "
        f"{Path(example).stem}); a label table has a column of their file names and one "
        "of their classes"
    )


def _class_notes(classes: set[str]) -> list[str]:
    """Notes on classes that look like fewer: one number written two ways (``01`` and ``1``,
    a column of codes whose leading zeros a spreadsheet dropped in some rows), and classes
    that join others with spaces (Plant Pathology 2021's ``scab frog_eye_leaf_spot``)."""
    notes = []
    spellings: dict[int, set[str]] = {}
    for label in classes:
        if re.fullmatch(r"-?\d+", label):
            spellings.setdefault(int(label), set()).add(label)
    if twins := [" and ".join(sorted(s)) for _, s in sorted(spellings.items()) if len(s) > 1]:
        notes.append(
            f"classes that are one number written in two ways are two classes: "
            f"{'; '.join(twins[:3])}{', ...' if len(twins) > 3 else ''}; write them alike if "
            "they are one"
        )
    joined = sorted(c for c in classes if " " in c and all(w in classes for w in c.split()))
    if joined:
        notes.append(
            f"classes that join others with spaces are classes of their own: "
            f"{', '.join(map(repr, joined[:3]))}{', ...' if len(joined) > 3 else ''} (each "
            "image is of one class, not of each it names)"
        )
    return notes


def _label_column(
    table: Path,
    rows: list[list[str]],
    names: list[str],
    files: int,
    header: bool,
    headed: bool = False,
):
    """How a row gives its class, and how the note says it: the one other column (unless
    ``headed``), else the one headed as classes are (``LABEL_HEADERS``), else one-hot
    columns."""
    others = [c for c in range(len(names)) if c != files and any(row[c] for row in rows)]
    if len(others) == 1 and not headed:
        (c,) = others
        return (lambda row: row[c]), f"column {names[c]!r}" if header else f"column {c + 1}"
    by_header = [c for c in others if header and names[c].strip().lower() in LABEL_HEADERS]
    if by_header:
        c, how = _headed_column(table, rows, names, by_header)
        return (lambda row: row[c]), how
    if header and others and _one_hot(rows, others):
        return (
            lambda row: next(names[c] for c in others if row[c] in ("1", "1.0", "1.00"))
        ), f"one-hot columns {', '.join(repr(names[c]) for c in others)}"
    if not others:
        raise NoImageLabelled(
            f"{table}: it names the images but gives no class; add a column of classes"
        )
    if headed and len(others) == 1:
        raise DataError(f"{table}: no column of it is headed as classes are (label, class...)")
    shown = ", ".join(_column(names, c, header) for c in others)
    fix = "head that one label" if header else "add a header row, heading that one label"
    raise DataError(
        f"{table}: which column holds the classes? its columns besides the files are {shown}; "
        + fix
    )


def _column(names: list[str], c: int, header: bool) -> str:
    """Column ``c`` as notes and errors name it: by its header (``'label'``), or in a table
    of no header row by its place (``column 2``)."""
    return repr(names[c]) if header else f"column {c + 1}"


class ClassColumnsDiffer(DataError):
    """A table of several columns headed as classes are, that class the images differently:
    refused where it is read, and not taken for a table of no classes."""


def _headed_column(
    table: Path, rows: list[list[str]], names: list[str], headed: list[int]
) -> tuple[int, str]:
    """Of the columns ``headed`` as classes are, the one read and how the note says it. Of
    several that class the images alike (a ``label`` numbering the ``breed`` names, a
    column given twice), the first of names, the note naming the others; several that
    class them differently (``diagnosis`` and ``target``) are refused, naming them."""

    def shown(c: int) -> str:  # a header given twice is told by its place
        twice = [names[d] for d in headed].count(names[c]) > 1
        return repr(names[c]) + (f" (column {c + 1})" if twice else "")

    if len(headed) == 1:
        return headed[0], f"column {shown(headed[0])}"
    cells = [[row[c] for row in rows] for c in headed]
    together = len(set(zip(*cells, strict=True)))
    if any(len(set(column)) != together for column in cells):
        listed = ", ".join(map(shown, headed[:-1])) + f" and {shown(headed[-1])}"
        raise ClassColumnsDiffer(
            f"{table}: columns {listed} are {'both' if len(headed) == 2 else 'all'} headed as "
            "classes are, and class the images differently; rename the header of each one "
            "not to train on"
        )
    named = [c for c, column in zip(headed, cells, strict=True) if not _numbers(column)]
    c = (named or headed)[0]
    rest = ", ".join(shown(d) for d in headed if d != c)
    return c, f"column {shown(c)} (also headed as classes: {rest}, which classes them alike)"


def _numbers(labels: Iterable[str]) -> bool:
    """Whether every one of ``labels`` (but empty ones) is a whole number."""
    return all(re.fullmatch(r"-?\d+", label) for label in labels if label)


# A JSON file beside a table larger than this is no map of class names (a COCO annotations
# file is hundreds of megabytes): not read.
CLASS_MAP_BYTES = 2**20


def named_classes(
    table: Path, classes: list[str], around: Iterable[Path] = ()
) -> tuple[list[str], list[str]]:
    """``classes`` (a table's, in ``class_order``) named by a JSON map of their numbers to
    names, as Kaggle's cassava's ``label_num_to_disease_map.json``
    (``{"0": "Cassava Bacterial Blight (CBB)", ...}``), where its numbers include every one
    of the classes and its names are all different; else as they are. The maps are looked
    for beside ``table``, then in the folders ``around`` it (those of the data set its
    split is one of), so that one map names the numbers of every split, wherever each
    split's table is. A table of some of its numbers is named by it too (a val.csv without
    images of class 3), so that a number has one name in every split. With a note naming
    the map used (and the numbers it names that the table has not), or the maps of numbers
    not used and why."""
    if not _numbers(classes):
        return classes, []
    notes = []
    for shown_map, name_of in _maps_around(table, around):
        if not set(classes) <= set(name_of):
            numbers = sorted(name_of, key=int)
            why = f"its numbers are {_few(numbers)}, the table's {_few(classes)}"
        elif len(set(name_of.values())) < len(name_of):
            why = "it gives two numbers one name"
        else:
            names = [name_of[c].strip() for c in classes]
            shown = _few([f"{c} {n}" for c, n in zip(classes, names, strict=True)])
            note = f"class names from {shown_map}: {shown}, in that order"
            if absent := sorted(set(name_of) - set(classes), key=int):
                named = _few([f"{c} {name_of[c].strip()}" for c in absent])
                note += f"; it also names {named}, of which {table.name} lists no image"
            return names, [note]
        notes.append(f"{shown_map} not taken for the class names: {why}")
    return classes, notes


def _maps_around(table: Path, around: Iterable[Path]) -> list[tuple[str, dict[str, str]]]:
    """The maps of ``class_maps`` beside ``table`` and in the folders ``around`` it, each
    once, by the name a note gives it: a map beside the table by its own name, one
    elsewhere with its folder's (``train/label_map.json``)."""
    found, seen = [], set()
    for folder in dict.fromkeys([table.parent, *around]):
        for path, name_of in class_maps(folder):
            if (key := os.path.realpath(path)) not in seen:
                seen.add(key)
                shown = path.name if folder == table.parent else f"{folder.name}/{path.name}"
                found.append((shown, name_of))
    return found


def class_maps(folder: Path) -> list[tuple[Path, dict[str, str]]]:
    """The JSON files in ``folder`` that map whole numbers to names, each with its map: each
    one beside a table is named in a note (``named_classes``), as taken or not."""
    try:
        entries = sorted(listing(folder), key=lambda e: e.name)
    except OSError:
        return []
    maps = []
    for e in entries:
        if e.name.startswith(".") or not e.name.lower().endswith(".json"):
            continue
        try:
            if not e.is_file() or e.stat().st_size > CLASS_MAP_BYTES:
                continue
            found = json.loads(Path(e.path).read_bytes())
        except (OSError, ValueError):
            continue
        if (
            isinstance(found, dict)
            and found
            and all(
                re.fullmatch(r"-?\d+", k) and isinstance(v, str) and v.strip()
                for k, v in found.items()
            )
        ):
            maps.append((Path(e.path), found))
    return maps


def _few(items: list[str], shown: int = 5) -> str:
    return ", ".join(items[:shown]) + (", ..." if len(items) > shown else "")


def class_order(labels: list[str]) -> list[str]:
    """The classes of ``labels`` in the order of the model's outputs: by value where every
    one is a whole number (class 10 after class 9, as the table numbers them), else as class
    folders are ordered (by name)."""
    found = Counter(labels)
    if _numbers(found):
        return sorted(found, key=int)
    return sorted(found)
