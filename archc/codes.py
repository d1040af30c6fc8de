"""Every diagnostic code in one table: {code: (title, explanation)}. `archc explain CODE` prints an entry and
docs/language.md's section `### CODE` opens with the same explanation (tests/test_codes.py keeps the two and
the codes used in archc/ in step). Also the distribution's name, which every install hint names."""

from __future__ import annotations

# `archc` on the package index is an unrelated project: install hints must name this distribution.
DISTRIBUTION = "archc-cnn"


def install_hint(extra: str) -> str:
    """The pip line that installs an extra of archc (`torch`, `keras`, `onnx`, `graph`, `lsp`, `all`)."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"


CODES: dict[str, tuple[str, str]] = {
    "A001": ("syntax error",
             "A syntax error: the parser met a token it cannot use there, or the file ended early."),
    "A002": ("unexpected character or encoding",
             "A character that belongs to no token, or a file that is not UTF-8."),
    "A003": ("bad indentation",
             "Indentation that matches no enclosing block, or that mixes tabs and spaces."),
    "A004": ("unreadable file",
             "A file that cannot be read: it does not exist, is not a regular file, or cannot be opened."),
    "A005": ("invalid JSON spec",
             "A JSON spec that is not JSON, or does not fit the IR's schema (`archc schema` prints it)."),
    "A006": ("not expressible as text",
             "An IR (a JSON spec) that the text syntax cannot express, met by `archc convert --to arch`."),
    "A101": ("unknown layer kind", "An unknown layer kind."),
    "A102": ("unknown block", "A call of an unknown block."),
    "A103": ("unknown name",
             "A name that is neither a parameter nor a flag of the layer kind."),
    "A104": ("bad argument value",
             "An argument of a layer kind with a value it does not accept: the wrong type, or outside its range."),
    "A105": ("duplicate name", "Two stages or named branches with one name in the same scope."),
    "A106": ("bad block call", "A block call whose arguments do not fit the block's parameters."),
    "A107": ("bad import",
             "An import outside the spec's directory, of a file that is not a spec (`.arch` or `.json`), an import "
             "cycle, or an imported file that is a network."),
    "A108": ("unknown parameter",
             "`--set` (or a keyword of `archc.check`) names a parameter the spec does not have, or gives a value "
             "that is not an expression. On the command line this is a usage error (exit status 2)."),
    "A109": ("recursive block", "A block that calls itself, directly or through others."),
    "A110": ("no input size", "A network without an `input` size."),
    "A111": ("unknown argument", "A keyword argument the layer kind does not have."),
    "A112": ("argument given twice", "A layer's argument given twice, by keyword or by position and keyword."),
    "A113": ("too many positional arguments", "More positional arguments than the layer kind takes."),
    "A114": ("missing argument", "A required argument of a layer kind left out."),
    "A115": ("arithmetic error",
             "Arithmetic that overflows a spec's numbers (int64, finite floats), divides by zero, or gives a "
             "function arguments it cannot take."),
    "A116": ("not a number", "A value used as a number that is not one (a string, a size)."),
    "A117": ("bad repetition count", "A repetition count (`x N`) that is not a whole number, 0 or more (`x 0` "
             "leaves the item out)."),
    "A118": ("bad size",
             "A size written where one is expected (the `input`, a checked `-> SIZE` or stage size) that is not "
             "`HxW`, `HxWxC` or a length."),
    "A119": ("a stage named like a layer kind",
             "A warning: a stage whose name is a layer kind (`conv:`, `multiply:`) and that holds several items runs "
             "them one after the other, which is seldom what such a name means. The spec checks; merges over "
             "branches are written with a merge kind (`add:`, `concat:`) over one branch a line."),
    "A200": ("shape rule failed",
             "A shape rule failed in a way no more specific code covers. Reserved: every rule of the shipped layer "
             "kinds raises one of the codes below, so no spec produces it today."),
    "A201": ("window larger than its input", "A window (kernel, with its dilation) larger than its padded input."),
    "A202": ("shapes cannot be added",
             "Shapes that cannot be added: branches of `add:` that disagree, or a residual whose shortcut cannot be "
             "built automatically."),
    "A203": ("shapes cannot be concatenated",
             "Shapes that cannot be concatenated: they disagree in a size other than the channels."),
    "A204": ("size differs from the spec's",
             "An output size that differs from the one the spec expects (a stage's `SIZE`, an item's `-> SIZE`)."),
    "A205": ("wrong kind of input",
             "A layer given the wrong kind of input: a feature map where a flat vector is needed, or the reverse."),
    "A206": ("groups do not divide the channels", "Groups that do not divide the channels (a conv's or a "
             "shuffle's groups, a split's parts)."),
    "A207": ("pooling window over padding only",
             "A pooling window that would cover padding only: its maximum would be -infinity and its average 0/0, "
             "so the language refuses it rather than let the frameworks disagree."),
    "A208": ("automatic shortcut skips most of its input",
             "A warning: the automatic shortcut of a residual is a 1x1 conv strided by more than 2 (ResNet's "
             "downsampling uses 2), so it reads one input pixel in stride squared: the body likely shrinks the map "
             "far more than intended (a global pooling inside the residual). The spec checks."),
    "A301": ("limit exceeded",
             "A limit was exceeded (see [Limits](#limits)): the file's size, a name's length, the number of layers, "
             "the depth of nested calls, the language server's time for one check."),
    "A302": ("too many parameters to build",
             "`archc build` refuses a model with more parameters than `--max-params`, or more than its file "
             "format holds (an ONNX file: protobuf's 2 GiB)."),
    "A401": ("cannot write an output",
             "An output archc will not or cannot write. It never overwrites a file the spec reads (the spec itself "
             "and every file it imports, however they are named: relatively, through a symlink or another hard "
             "link), never replaces what is not a regular file (a character device such as `/dev/null` or a FIFO "
             "is written to, anything else is refused), never rewrites a read-only file, and never writes two "
             "pages of one name (`report a/net.arch b/net.arch`). When the operating system refuses (a missing or "
             "read-only directory, a full disk, a closed pipe), the message gives the path and the system's reason "
             "(\"No space left on device\"), and the exit status is 1, as for any other diagnostic."),
    "A402": ("unknown backend", "An unknown backend."),
    "A403": ("package not installed",
             "A backend or tool needs a Python package that is not installed; the help names the `pip install` "
             "line."),
    "A404": ("cannot emit PyTorch",
             "The PyTorch backend cannot emit the plan: a layer name that cannot name a module, two layers with one "
             "name, a name that is both a layer and a scope, or a file format it does not write."),
    "A405": ("PyTorch export or weights failed",
             "PyTorch cannot export the model (`--format pt2`), weights come from an object the torch backend "
             "cannot read, or a source module cannot be run on the spec's input size to read its structure."),
    "A406": ("weights do not fit (PyTorch)",
             "Weights that do not fit a PyTorch model. From a module, layers are matched through the structure "
             "(`docs/matching.md`) and the first place where the two models part is named: the spec's layer at its "
             "line, the source's module, and what differs. From a state dict, tensors are copied by position: a "
             "tensor of another shape, or a different number of tensors."),
    "A410": ("bad Keras layer name", "A layer name that cannot be a Keras layer name."),
    "A411": ("Keras names collide",
             "Two layers whose Keras names (the dotted path joined with `_`) would be the same."),
    "A412": ("cannot emit Keras",
             "The Keras backend cannot emit a layer: a kind it lacks, or a pooling window that covers padding "
             "only."),
    "A413": ("weights cannot move between frameworks",
             "Weights cannot be moved between a PyTorch and a Keras model of one spec."),
    "A420": ("too many layers to draw",
             "`archc graph` at layer level refuses networks with more layers than it can draw one node each."),
    "A421": ("Graphviz not installed",
             "SVG and PNG need Graphviz's `dot` program; the help says how to install it (`apt-get install "
             "graphviz`, `brew install graphviz`). DOT and Mermaid output need nothing."),
    "A430": ("ONNX file format",
             "The ONNX backend was asked for a file format other than `onnx` (through the Python API; the command "
             "line refuses it as a usage error)."),
    "A431": ("weights do not fit (ONNX)",
             "Weights that do not fit an ONNX model: a name the source lacks, a tensor of another shape, or a "
             "source the backend cannot read."),
    "A501": ("operation the language cannot express",
             "`archc import` met an operation of the source model that the language cannot express yet; the "
             "message names the operation and where it sits in the source (its module path, ONNX node name or "
             "Keras layer name). `--partial` writes the layers before it, with a comment at the gap."),
    "A502": ("no reader for the source",
             "`archc import` cannot read this kind of source: a file extension it does not know, an object of a "
             "framework it has no reader for, or a reader that is not part of this version of archc."),
    "A503": ("cannot load the source",
             "`archc import module:callable` could not import the module, find the callable, or call it with no "
             "arguments; or SOURCE is neither a file nor `module:callable`."),
    "A504": ("structure the language cannot write",
             "The source's data flow has no spec: a layer read by branches that merge at different points (a "
             "graph that is not series-parallel), an identity input of a merge where no `residual` can put it, "
             "or layers that never reach the output (several outputs)."),
    "A505": ("imported spec differs from the source",
             "The spec `archc import` wrote does not check back to the same network as the source. This is a bug "
             "in archc; the spec is not written, so no different model is ever handed back."),
    "A551": ("parameters set on a model",
             "`archc diff --set`, `--set-a` or `--set-b` gives network parameters to a side that is a model, not a "
             "spec: a model has no parameters to set."),
    "A552": ("a model the language cannot express",
             "`archc diff` read a model that holds an operation the spec language cannot express; the message "
             "names the operation and where it sits in the model (its module path or node name)."),
}

PHASES = {"0": "reading and parsing", "1": "names, arguments and definitions", "2": "shapes", "3": "limits",
          "4": "backends, building and drawing",
          "5": "importing and comparing models"}


def explain(code: str) -> str | None:
    """The text `archc explain CODE` prints, None for an unknown code."""
    code = code.strip().upper()
    if code.isdigit():
        code = "A" + code.zfill(3)
    if code not in CODES:
        return None
    title, text = CODES[code]
    return (f"{code}: {title} ({PHASES.get(code[1], 'other')})\n\n{text}\n\n"
            f"docs/language.md#{code.lower()} has an example.\n")
