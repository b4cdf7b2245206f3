"""Deterministic half of the hybrid planner: a validity gate, and grounding of free phrasing to scene objects.

`gate(text)` refuses text that is not a manipulation instruction whatever the scene holds: code, SQL, shell
lines, prompt-injection strings, lorem ipsum, empty / very long / mostly non-letter text.

`parse(text, scene)` reads a command by grounding words to the scene's declared objects and by the roles the
task declares (pickable, receptacle, pour_source, pour_target), not by sentence templates:
- nouns match an object's kind, the extra words its task declares, base synonyms and hypernyms ("the fruit",
  "the dish", "the jug", "the glass", "the container"); typos are corrected to the closest word of the scene's
  vocabulary (weighted edit distance); colours and left / right (robot frame: +y is left) narrow a mention;
- each clause is a pour (pour / fill / empty / tip / water ...) or a pick-and-place; its mentions are paired
  object -> target by prepositions ("in", "onto", "from", "using", "->", ":") and, where those are missing,
  by the objects' roles ("pour pitcher cup", "fill the cup using the pitcher", "the apple belongs on the plate");
- sorting ("sort", "where it belongs", "its bin", "matching bin") sends each pickable to the receptacle of its
  colour, in the canonical colour order unless the command sets one ("first the blue one, then the red");
  "only" / a colour list chooses a subset, "except" / "leave ... alone" / "not" excludes objects;
- a noun that names no object on the table is `unknown_object`; a plan a skill cannot do is `impossible`.
It returns None when it cannot decide; the learned H-module then answers (see planner.py).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

from sage_gr00t.plan.scene import COLORS, Scene, SceneObject
from sage_gr00t.plan.vocabulary import KIND_WORDS, PICKABLE, POUR_SOURCES, POUR_TARGETS, RECEPTACLES

_ROLE_KINDS = {"pickable": PICKABLE, "receptacle": RECEPTACLES, "pour_source": POUR_SOURCES,
               "pour_target": POUR_TARGETS}


def has_role(o: SceneObject, *roles: str) -> bool:
    """The declared role, or for objects without one, the installed vocabulary's kinds (a bowl is both)."""
    if o.role:
        return o.role in roles
    return any(o.kind in _role_kinds().get(r, ()) for r in roles)


_VOCAB: dict[str, tuple[str, ...]] = {}


def _role_kinds() -> dict[str, tuple[str, ...]]:
    if not _VOCAB:
        try:
            from sage_gr00t.plan.vocabulary import task_vocabulary

            v = task_vocabulary()
            _VOCAB.update(pickable=v.pickable, receptacle=v.receptacles, pour_source=v.pour_sources,
                          pour_target=v.pour_targets)
        except Exception:
            _VOCAB.update(_ROLE_KINDS)
    return _VOCAB

MAX_CHARS, MAX_WORDS = 300, 60

# ------------------------------------------------------------------------------------------ the gate
_CODE = [
    r"\b(drop|create|alter|truncate)\s+(table|database|index|view|schema)\b", r"\bselect\b[\s\S]*\bfrom\b",
    r"\binsert\s+into\b", r"\bdelete\s+from\b", r"\bupdate\s+\w+\s+set\b", r"\bunion\s+select\b",
    r"\bwhere\s+\w+\s*(=|like)", r"'\s*or\s+'?\d", r"\bselect\s+\*",
    r";\s*--", r"--\s*$", r"\bdef\s+\w+\s*\(", r"\bfunction\b\s*\w*\s*\(", r"=>", r"\bconsole\.\w+", r"\w\(",
    r"[{}\[\]<>]", r"\b(import|from)\s+[\w.]+\s*(import|;|$)", r"#\s*include", r"\breturn\b.*;", r"\$\(|`|\$\w+",
    r"&&|\|\||\|", r"(^|\s)(/[\w.-]+){2,}", r"~/", r"^\s*(sudo|rm|ls|cd|cat|echo|curl|wget|chmod|chown|grep|git|pip|"
    r"python3?|bash|sh|mkdir|kill|apt(-get)?|npm|docker|ssh|export|source)\b", r"\s-{1,2}[a-z]\w*(\s|$)",
    r"\bvar\s+\w+\s*=|\blet\s+\w+\s*=|\bconst\s+\w+\s*=", r"^\s*\w+\s*=\s*\S", r"==|!=|\+=|\*\*", r"\\[nrt]",
    r"\b(null|true|false|none|undefined)\b\s*[;,)]", r"\bwhile\s*\(|\bfor\s*\(|\bif\s*\(", r"\bprint\b",
]
_INJECTION = [
    r"\b(ignore|disregard|forget|override|bypass)\b.*\b(instructions?|rules?|prompts?|above|previous|prior|"
    r"everything|guidelines|directions|orders)\b", r"\b(system|developer|admin)\s*(prompt|mode|message|:)",
    r"\byou are now\b", r"\bjailbreak\b", r"\b(reveal|print|show|output)\b.*\b(prompt|instructions|secrets?|"
    r"passwords?|keys?)\b", r"\bact as\b", r"\bpretend (to be|you)\b", r"\bnew instructions?\b",
    r"\bprevious instructions\b", r"\bas an ai\b", r"^\s*(system|assistant|user)\s*:",
]
_LOREM = r"\b(lorem|ipsum|dolor|consectetur|adipiscing|amet)\b"


def gate(text: str) -> str | None:
    """Why `text` cannot be a manipulation instruction in any scene (None: it may be one)."""
    t = re.sub(r"(->|=>|→|⇒)", " to ", text.strip())  # symbolic arrows are instructions ("apple -> plate")
    if not t or not any(c.isalpha() for c in t):
        return "the command is empty or has no words"
    if len(t) > MAX_CHARS or len(t.split()) > MAX_WORDS:
        return "the command is too long to be one instruction"
    plain = sum(c.isascii() and (c.isalnum() or c in " ,.;:!?'-\"&()/>\n\t") for c in t)
    if plain / len(t) < 0.9 or sum(c.isalpha() and c.isascii() for c in t) < 0.5 * len(t.replace(" ", "")):
        return "the command is mostly symbols, not words"
    low = t.lower()
    if "\n" in t.strip() and len(t.strip().splitlines()) > 2:
        return "the command spans several lines like code"
    for pats, why in ((_INJECTION, "it tries to change my instructions"), (_CODE, "it looks like code or a query")):
        if any(re.search(p, low, re.M) for p in pats):
            return why
    if re.search(_LOREM, low):
        return "it is placeholder text"
    return None


# ------------------------------------------------------------------------------------------ lexicon
COLOR_SYNONYMS = {"crimson": "red", "scarlet": "red", "navy": "blue", "azure": "blue", "emerald": "green",
                  "golden": "yellow", "gold": "yellow", "violet": "purple", "grey": "gray"}
HYPERNYMS = {  # a word naming a class of kinds (matched against kind and role)
    "fruit": ("apple", "banana", "pear", "orange", "lime", "lemon", "mango", "peach", "plum", "fruit"),
    "dish": ("plate", "tray", "bowl"), "container": ("bin", "bowl", "box", "basket"),
    "receptacle": ("bin", "bowl", "plate", "tray"), "vessel": ("cup", "bowl", "pitcher"),
    "toy": ("block", "cylinder"), "piece": ("block", "cylinder"), "shape": ("block", "cylinder"),
}
ANY_NOUNS = {"one", "thing", "object", "item", "stuff"}
EXTRA_WORDS = {"pitcher": ["jug", "carafe", "jar", "kettle"], "cup": ["glass", "mug", "tumbler"],
               "plate": ["dish", "saucer"], "bin": ["box", "basket", "container", "crate"], "tray": ["platter"],
               "block": ["cube", "brick"], "cylinder": ["tube", "puck"]}
# Nouns of things that are never part of the shipped scenes: naming one is an unknown object.
OTHER_NOUNS = {"hammer", "spoon", "laptop", "phone", "book", "bottle", "sock", "car", "screwdriver", "bear",
               "knife", "ball", "carrot", "wrench", "candle", "fork", "shoe", "remote", "banana", "pear", "bowl",
               "tray", "plate", "cup", "pitcher", "jug", "block", "cube", "bin", "apple", "orange", "lime",
               "lemon", "mango", "peach", "plum", "cylinder", "brick", "basket", "box", "glass", "mug", "pen",
               "key", "keys", "wallet", "towel", "sponge", "bag", "doll", "toy", "chair", "table", "pot", "pan",
               "kettle", "egg", "tomato", "potato", "onion", "grape", "cherry", "melon", "dish", "container"}
POUR_VERBS = {"pour", "fill", "empty", "tip", "tilt", "decant", "water", "refill", "drain", "dump"}
PLACE_VERBS = {"put", "place", "move", "set", "drop", "stick", "transfer", "get", "bring", "take", "grab", "lift",
               "pick", "carry", "belongs", "belong", "goes", "go", "deposit", "load", "position", "shift", "relocate",
               "plop", "toss", "lay", "rest", "slide", "push", "nudge", "shove", "pushing", "sliding", "need", "needs",
               "want", "like", "should", "return", "store", "stack", "hand", "deliver", "pop", "gets", "receive",
               "receives", "make", "have", "leave", "keep", "see"}
VERBS: set[str] = set()  # filled below
SORT_VERBS = {"sort", "organize", "organise", "tidy", "arrange", "group", "classify", "match", "separate",
              "order", "clean", "file"}
VERBS.update(POUR_VERBS, PLACE_VERBS, SORT_VERBS)
TARGET_PREPS = {"in", "into", "inside", "on", "onto", "to", "at", "over", "toward", "towards", "within", "top",
                "under", "beside", "near", "next", "->", "in to", "upon"}
SOURCE_PREPS = {"from", "using", "with", "out"}
SEQ_WORDS = {"then", "next", "afterwards", "afterward", "after", "later", "finally", "lastly", "second",
             "followed"}
EXCLUDE_WORDS = {"except", "but", "not", "without", "excluding", "besides", "other", "apart", "leave", "skip",
                 "ignore", "alone", "dont", "don't", "never", "untouched", "keep", "save"}
RECEPTACLE_WORDS = {"bin", "box", "basket", "container", "crate"}
ONLY_WORDS = {"only", "just", "solely", "merely"}
MATCH_WORDS = {"belongs", "belong", "its", "their", "matching", "match", "matches", "same", "own", "proper",
               "correct", "right", "corresponding"}
_FUNCTION_TEXT = """
the a an some my this that these those it them they its their of and or please could you can would will kindly
i i'd id i'm we us me let's lets do to be is are was want wants like need should must up down off away over
there here now then first second third next after afterwards finally also too just only thanks thank ok okay
hey robot so um uh alright sure go ahead for each every all both everything everyone rest remaining other
others one ones with water from using into onto on in inside top by colour color colours colors coloured
colored bin bins where belongs belong goes make gets get ensure see while when way way? quickly carefully
gently slowly asap again back well as own same matching corresponding right left side correct proper spot
place places home homes respective appropriate which whose it's that's keep leave alone except but not without
excluding besides apart don't dont skip untouched mind if kind enough
"""
FUNCTION_WORDS = set(_FUNCTION_TEXT.split())
FILLER = {"please", "could", "you", "can", "would", "will", "kindly", "i'd", "id", "like", "want", "hey", "robot",
          "ok", "okay", "so", "um", "uh", "alright", "now", "thanks", "thank", "just", "sure", "make", "ensure"}


def _edit(a: str, b: str) -> float:
    """Weighted Damerau-Levenshtein: insertions / deletions / transpositions cost 1, substitutions 1.25."""
    d = [[0.0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            c = 0.0 if a[i - 1] == b[j - 1] else 1.25
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + c)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


def _singular(w: str) -> str:
    if len(w) > 3 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith(("ches", "shes", "xes", "sses")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


# ------------------------------------------------------------------------------------------ parsing
@dataclass
class Mention:
    start: int  # token index of the head noun (or of the colour for "the blue one")
    span: tuple[int, int]  # char span in the command
    text: str
    objects: list[SceneObject]  # the scene objects it may mean (empty: nothing on the table)
    plural: bool = False
    known_noun: bool = True  # the noun is a word for an object (else a determiner + an unknown word)
    match: bool = False  # "its bin" / "where it belongs": the receptacle of the object's colour
    label: str = ""  # "tgt" / "src" / "" from the words before it


@dataclass
class Parse:
    refusal: str | None  # None: a plan; unknown_object / impossible / garbage
    steps: list[tuple[str, SceneObject, SceneObject]] = field(default_factory=list)
    message: str = ""


class _Words:
    """The command's tokens with char spans, after symbol rewriting and typo correction."""

    def __init__(self, text: str, lexicon: set[str], protect: set[str]) -> None:
        self.raw = text
        low = text.lower().replace("’", "'")
        low = re.sub(r"(->|=>|→|⇒)", " to ", low)
        low = re.sub(r"(?<=\w)\s*:\s*(?=\w)", " to ", low)  # "red block: red bin"
        self.symbolic = low != text.lower().replace("’", "'")
        self.text = low
        self.toks, self.spans = [], []
        for m in re.finditer(r"[a-z]+(?:'[a-z]+)?|[.;!?,]", low):
            self.toks.append(m.group())
            self.spans.append(m.span())
        self.fixed = [self.correct(w, lexicon, protect, first=(i == 0)) for i, w in enumerate(self.toks)]

    @staticmethod
    def correct(w: str, lexicon: set[str], protect: set[str], first: bool = False) -> str:
        if not w[0].isalpha() or w in lexicon or w in protect or _singular(w) in lexicon or len(w) < 3:
            return w
        best, best_d = w, 9.0
        limit = 1.0 if len(w) <= 4 else (1.25 if len(w) <= 6 else 2.0)
        for cand in lexicon:
            if abs(len(cand) - len(w)) > 2 or (cand[0] != w[0] and len(w) < 6 and sorted(cand[:2]) != sorted(w[:2])):
                continue
            dd = _edit(w, cand) - (0.01 if first and cand in VERBS else 0.0)  # a command starts with its verb
            if dd < best_d or (dd == best_d and len(cand) > len(best)):
                best, best_d = cand, dd
        return best if best_d <= limit else w


class LanguageParser:
    """Grounds one command to one scene (see the module docstring)."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self.objs = list(scene.objects)
        self.colors = {o.color for o in self.objs if o.color} | set(COLORS) | {"pink", "white", "black", "gray",
                                                                                "brown"}
        self.kind_nouns: dict[str, set[str]] = {}  # noun -> kinds it names
        for o in self.objs:
            for w in (o.kind, *KIND_WORDS.get(o.kind, ()), *EXTRA_WORDS.get(o.kind, ()), *getattr(o, "words", ())):
                self.kind_nouns.setdefault(w, set()).add(o.kind)
        for hyper, kinds in HYPERNYMS.items():  # a class word only where no kind present is called so
            if hyper not in self.kind_nouns:
                self.kind_nouns[hyper] = set(kinds)
        self.lexicon = (set(self.kind_nouns) | OTHER_NOUNS | self.colors | set(COLOR_SYNONYMS) | POUR_VERBS
                        | PLACE_VERBS | SORT_VERBS | FUNCTION_WORDS | TARGET_PREPS | SOURCE_PREPS | SEQ_WORDS
                        | EXCLUDE_WORDS | ONLY_WORDS | MATCH_WORDS | ANY_NOUNS | {"blocks", "up", "away"})
        self.lexicon = {w for w in self.lexicon if " " not in w and w.isalpha()}

    # -------------------------------------------------------------- mentions
    def _color(self, w: str) -> str | None:
        w = COLOR_SYNONYMS.get(w, w)
        return w if w in self.colors else None

    def _kinds_of_noun(self, w: str) -> tuple[set[str], bool] | None:
        for cand, plural in ((w, False), (_singular(w), True)):
            if cand in self.kind_nouns:
                return self.kind_nouns[cand], plural and cand != w
        return None

    def _candidates(self, kinds: set[str] | None, color: str | None, side: str | None) -> list[SceneObject]:
        c = [o for o in self.objs if kinds is None or o.kind in kinds]
        if color:
            c = [o for o in c if o.color == color]
        if side and len(c) > 1:
            ys = [o.position[1] for o in c]
            if max(ys) - min(ys) > 1e-6:
                c = [max(c, key=lambda o: o.position[1])] if side == "left" else [min(c, key=lambda o: o.position[1])]
        return c

    def mentions(self, w: _Words) -> list[Mention]:
        toks, out, i = w.fixed, [], 0
        while i < len(toks):
            t = toks[i]
            start = i
            color = side = None
            j = i
            while j < len(toks) and (self._color(toks[j]) or toks[j] in ("left", "right", "leftmost", "rightmost")):
                nxt = toks[j + 1] if j + 1 < len(toks) else ""
                if toks[j] in ("left", "right", "leftmost", "rightmost"):
                    if nxt in ("of", "side", "hand") or not nxt or not nxt[0].isalpha():
                        break
                    side = toks[j].replace("most", "")
                elif self._color(toks[j]) and (toks[j] not in self.kind_nouns or self._noun_at(toks, j + 1)):
                    color = self._color(toks[j])
                else:
                    break
                j += 1
            nk = self._kinds_of_noun(toks[j]) if j < len(toks) else None
            span0 = w.spans[start][0]
            if nk is not None:
                kinds, plural = nk
                tail = " ".join(toks[j + 1:j + 4])
                after = re.match(r"(on|to|at) (the|your|my) (left|right)\b", tail)
                if side is None and after:  # "the cup on the right"
                    side = after.group(3)
                cands = self._candidates(kinds, color, side)
                out.append(Mention(j, (span0, w.spans[j][1]), w.raw[span0:w.spans[j][1]], cands, plural))
                i = j + 1
                continue
            if j < len(toks) and toks[j] in ANY_NOUNS | {"ones"} and (color or side):
                cands = self._candidates(None, color, side)
                out.append(Mention(j, (span0, w.spans[j][1]), w.raw[span0:w.spans[j][1]], cands,
                                   toks[j] == "ones"))
                i = j + 1
                continue
            if (color or side) and j > i:  # "the blue" / "then the red": a colour alone names an object
                cands = self._candidates(None, color, side)
                out.append(Mention(j - 1, (span0, w.spans[j - 1][1]), w.raw[span0:w.spans[j - 1][1]], cands))
                i = j
                continue
            if t in OTHER_NOUNS or _singular(t) in OTHER_NOUNS:
                out.append(Mention(i, w.spans[i], w.raw[w.spans[i][0]:w.spans[i][1]], []))
            elif t.isalpha() and t not in self.lexicon and i > 0 and toks[i - 1] in ("the", "a", "an", "my", "this"):
                out.append(Mention(i, w.spans[i], w.raw[w.spans[i][0]:w.spans[i][1]], [], known_noun=False))
            i += 1
        return out

    def _noun_at(self, toks: list[str], j: int) -> bool:
        return j < len(toks) and (self._kinds_of_noun(toks[j]) is not None or toks[j] in ANY_NOUNS | {"ones"}
                                  or toks[j] in OTHER_NOUNS)

    # -------------------------------------------------------------- whole command
    def parse(self, text: str) -> Parse | None:
        protect = set(self.kind_nouns) | self.colors
        w = _Words(text, self.lexicon, protect)
        toks = w.fixed
        words = [t for t in toks if t[0].isalpha()]
        if not words:
            return Parse("garbage", message="no words")
        unknown = [t for t in words if t not in self.lexicon and _singular(t) not in self.lexicon]
        ms = self.mentions(w)
        tokset = set(toks)
        has_pour = bool(tokset & POUR_VERBS)
        has_sort = bool(tokset & SORT_VERBS) or self._match_phrase(toks) or "by colour" in " ".join(toks) or \
            "by color" in " ".join(toks)
        has_place = bool(tokset & PLACE_VERBS) or w.symbolic or bool(tokset & {"in", "into", "onto", "on", "to"})
        # Choosing, ordering or excluding objects is an instruction about the scene's task ("only the red block").
        selective = bool(tokset & (ONLY_WORDS | {"first", "except", "leave", "skip", "alone", "excluding"}))
        has_place = has_place or (selective and bool(ms))
        if len(unknown) > max(1, 0.34 * len(words)):
            return Parse("garbage", message="too many words I do not know")
        if toks[0] in ("what", "where", "who", "why", "how", "which", "when", "is", "are", "does", "do", "did") \
                and not (tokset & (POUR_VERBS | SORT_VERBS | {"put", "place", "move", "pick", "set"})):
            return Parse("garbage", message="a question, not an instruction")
        if not (has_pour or has_sort or has_place):
            return Parse("garbage", message="no action")
        if not ms and not has_sort and not (has_pour and tokset & {"water", "cup", "glass"}):
            return Parse("garbage", message="nothing to act on")
        # Unknown objects: a noun naming nothing on the table (or a determiner + an unknown word).
        for m in ms:
            if has_sort and not m.objects and _singular(m.text.lower().split()[-1]) in RECEPTACLE_WORDS:
                continue  # "sort the blocks into their bins" without bins: impossible, judged by sorting
            if not m.objects and (m.known_noun or has_place or has_pour):
                return Parse("unknown_object", message=m.text)
        # Mark matching targets, exclusions, labels.
        self._label(ms, toks)
        excluded = self._excluded(ms, toks)
        if has_sort or any(m.match for m in ms) or self._match_phrase(toks):
            return self._sort(ms, toks, excluded)
        if selective and not has_pour and not any(m.label == "tgt" for m in ms) and self._sortable_scene():
            return self._sort(ms, toks, excluded)
        if not has_pour and not (tokset & PLACE_VERBS) and ms and all(  # "pitcher -> cup"
                m.objects and has_role(m.objects[0], "pour_source", "pour_target") and
                not has_role(m.objects[0], "receptacle") for m in ms):
            has_pour = True
        if (has_pour and not has_place_clause(toks)) or (has_pour and all(
                has_role(m.objects[0], "pour_source", "pour_target") for m in ms if m.objects)):
            return self._steps(ms, toks, excluded, default_skill="pour")
        return self._steps(ms, toks, excluded, default_skill="pick_place")

    @staticmethod
    def _match_phrase(toks: list[str]) -> bool:
        s = " ".join(toks)
        return bool(re.search(r"\b(where (it|they|each one|each) belongs?|(its|their) (own |right |proper |correct |"
                              r"matching |respective )?(bins?|boxes|box|baskets?|containers?|places?|spots?|homes?)|"
                              r"(matching|same colou?r(ed)?|corresponding|right|correct|proper) (bins?|boxes|places?)|"
                              r"(bin|box) (of|with|that matches|matching) (its|their|the same)|by colou?r|"
                              r"matches (its|their) colou?r)\b", s))

    def _label(self, ms: list[Mention], toks: list[str]) -> None:
        for m in ms:
            before = toks[max(0, m.start - 5):m.start]
            # Only words between the previous mention and this one count.
            prev_end = max((p.start for p in ms if p.start < m.start), default=-1)
            before = toks[max(prev_end + 1, m.start - 5):m.start]
            # strip determiners/colours
            core = [b for b in before if b not in ("the", "a", "an", "of", "some", "water", "left", "right")
                    and not self._color(b)]
            last = core[-1] if core else ""
            if last in SOURCE_PREPS or (len(core) > 1 and core[-2:] == ["out", "of"]):
                m.label = "src"
            elif last in TARGET_PREPS or last in ("belongs", "goes", "go", "belong", "gets", "receives") or \
                    (len(core) > 1 and core[-2] in ("in", "on", "into", "onto")):
                m.label = "tgt"
            if toks[m.start] in ("bin", "bins", "box", "boxes", "basket", "baskets", "place", "spot") and \
                    any(b in ("its", "their", "matching", "own", "same", "corresponding", "respective")
                        for b in before[-3:]):
                m.match = True

    def _excluded(self, ms: list[Mention], toks: list[str]) -> set[str]:
        """Objects the command keeps out: "except the blue block", "leave the red one alone", "not the lime"."""
        out: set[str] = set()
        triggers = {"except", "not", "without", "excluding", "besides", "leave", "skip", "ignore", "don't", "dont",
                    "never", "apart", "than"}
        for m in ms:
            j = m.start - 1
            while j >= 0 and toks[j] not in triggers and toks[j] not in (",", ".", ";", "then", "but", "only") \
                    and m.start - j <= 6:
                j -= 1
            hit = j >= 0 and toks[j] in triggers
            after = " ".join(toks[m.start + 1:m.start + 4])
            if hit or re.match(r"(alone|untouched|where it is|in place|as it is|out of it|out)\b", after):
                out.update(o.name for o in m.objects)
        return out

    def _sortable_scene(self) -> bool:
        return any(o.color and has_role(o, "pickable") and self._receptacle_for(o) for o in self.objs)

    def _receptacle_for(self, o: SceneObject) -> SceneObject | None:
        for r in self.objs:
            if has_role(r, "receptacle") and o.color and r.color == o.color and r.name != o.name:
                return r
        return None

    def _sort(self, ms: list[Mention], toks: list[str], excluded: set[str]) -> Parse:
        sortable = [o for o in self.objs if has_role(o, "pickable")
                    and o.color]
        chosen_m = [m for m in ms if not m.match and m.label != "tgt" and
                    any(o in sortable for o in m.objects) and not all(o.name in excluded for o in m.objects)]
        pool: list[SceneObject] = []
        for m in chosen_m:
            pool += [o for o in m.objects if o in sortable and o not in pool]
        if not chosen_m:
            pool = list(sortable)
        pool = [o for o in pool if o.name not in excluded]
        ordered = self._explicit_order(toks)
        if ordered:
            pool = sorted(pool, key=lambda o: next((i for i, n in enumerate(ordered) if n in o.name), 99))
        else:
            rank = {c: i for i, c in enumerate(COLORS)}
            pool = sorted(pool, key=lambda o: rank.get(o.color, 99))
        steps = []
        for o in pool:
            r = self._receptacle_for(o)
            if r is not None:
                steps.append(("pick_place", o, r))
        if not sortable:
            kinds = [t for t in toks if _singular(t) in ("block", "cube", "cylinder", "brick")]
            return Parse("unknown_object", message=kinds[0] if kinds else "blocks")
        if not steps:
            return Parse("impossible", message="no block has a bin of its own colour")
        return Parse(None, steps[:4])

    def _explicit_order(self, toks: list[str]) -> list[str]:
        """Colour order the command sets with sequencing words ("first the blue one, then the red")."""
        if not (set(toks) & (SEQ_WORDS | {"first", "before"})):
            return []
        seen: list[str] = []
        for t in toks:
            c = self._color(t)
            if c and c not in seen:
                seen.append(c)
        return seen

    def _steps(self, ms: list[Mention], toks: list[str], excluded: set[str], default_skill: str) -> Parse | None:
        # Clauses: split at sequencing words and sentence punctuation; skill per clause.
        bounds = [i for i, t in enumerate(toks) if t in (".", ";", "!", "?") or t in ("then", "next", "afterwards",
                                                                                      "after", "finally", "followed")]
        steps: list[tuple[str, SceneObject, SceneObject]] = []
        # "... in the red bin and empty the pitcher into the cup": "and" + a verb of the other skill splits too.
        pour_at = [i for i, t in enumerate(toks) if t in POUR_VERBS - {"water"}]
        place_at = [i for i, t in enumerate(toks) if t in PLACE_VERBS]
        if pour_at and place_at:
            bounds += [i for i, t in enumerate(toks) if t == "and" and i + 1 < len(toks) and
                       (toks[i + 1] in POUR_VERBS) != any(p < i for p in pour_at[:1]) and
                       (toks[i + 1] in POUR_VERBS or toks[i + 1] in PLACE_VERBS)]
            bounds.sort()
        edges = [-1, *bounds, len(toks)]
        any_pour = default_skill == "pour"
        for a, b in itertools.pairwise(edges):
            cm = [m for m in ms if a < m.start < b and not any(o.name in excluded for o in m.objects)]
            if not cm:
                continue
            ctoks = set(toks[a + 1:b])
            skill = "pour" if ctoks & POUR_VERBS else ("pick_place" if ctoks & PLACE_VERBS else default_skill)
            got = self._pair(cm, skill, ctoks)
            if got is None:
                return None
            if isinstance(got, Parse):
                return got
            steps += got
        if not steps and any_pour:
            got = self._pair([m for m in ms if not any(o.name in excluded for o in m.objects)], "pour", set(toks))
            if isinstance(got, Parse) or got is None:
                return got
            steps = got
        if not steps:
            return None
        dedup = []
        for s in steps:
            if all((s[0], s[1].name, s[2].name) != (d[0], d[1].name, d[2].name) for d in dedup):
                dedup.append(s)
        return Parse(None, dedup[:4])

    def _one(self, m: Mention, want_roles: tuple[str, ...]) -> SceneObject | Parse:
        objs = m.objects
        if len(objs) > 1:
            pref = [o for o in objs if has_role(o, *want_roles)]
            objs = pref or objs
        if len(objs) > 1:
            return Parse("unknown_object", message=f"which {m.text}? I see "
                         f"{', '.join(o.description for o in objs)}")
        return objs[0]

    def _pair(self, cm: list[Mention], skill: str, ctoks: set[str]) -> list | Parse | None:
        if skill == "pour":
            srcs = [m for m in cm if m.label == "src" or (m.label != "tgt" and m.objects and
                                                         all(has_role(o, "pour_source") for o in m.objects))]
            tgts = [m for m in cm if m not in srcs]
            if "fill" in ctoks and not tgts and len(srcs) == 1 and srcs[0].label != "src":
                tgts, srcs = srcs, []
            if not srcs and len(tgts) >= 2 and tgts[0].label != "tgt":
                srcs, tgts = tgts[:1], tgts[1:]
            if not srcs:
                pitchers = [o for o in self.objs if has_role(o, "pour_source")]
                if len(pitchers) != 1:
                    return Parse("unknown_object", message="pitcher") if not pitchers else None
                src_obj: SceneObject | Parse = pitchers[0]
            else:
                src_obj = self._one(srcs[0], ("pour_source",))
            if isinstance(src_obj, Parse):
                return src_obj
            if not tgts:  # "pour the water": the one pour target on the table
                cups = [o for o in self.objs if has_role(o, "pour_target") and not has_role(o, "receptacle")]
                if len(cups) != 1:
                    return None
                return [("pour", src_obj, cups[0])]
            out = []
            for t in tgts:
                if t.match:
                    continue
                tgt = self._one(t, ("pour_target",))
                if isinstance(tgt, Parse):
                    return tgt
                out.append(("pour", src_obj, tgt))
            return out
        # pick_place: walk mentions, pairing object and target.
        out, pend_o, pend_t = [], [], None
        for m in cm:
            is_tgt = m.label == "tgt" or m.match or (m.label == "" and m.objects and pend_o and
                                                      all(has_role(o, "receptacle") for o in m.objects))
            if not is_tgt and m.label == "" and not pend_o and m.objects and all(
                    has_role(o, "receptacle") for o in m.objects) and pend_t is None and len(cm) > 1 and \
                    any(x.objects and all(has_role(o, "pickable") for o in x.objects) for x in cm):
                is_tgt = True
            if is_tgt:
                if m.match:
                    for o in pend_o:
                        r = self._receptacle_for(o)
                        if r is None:
                            return Parse("impossible", message=f"no bin matches the {o.description}")
                        out.append(("pick_place", o, r))
                    pend_o = []
                    continue
                tgt = self._one(m, ("receptacle",))
                if isinstance(tgt, Parse):
                    return tgt
                if pend_o:
                    out += [("pick_place", o, tgt) for o in pend_o]
                    pend_o = []
                else:
                    pend_t = tgt
            else:
                if m.plural:
                    objs = [o for o in m.objects if has_role(o, "pickable")] or m.objects
                else:
                    one = self._one(m, ("pickable",))
                    if isinstance(one, Parse):
                        return one
                    objs = [one]
                if pend_t is not None:
                    out += [("pick_place", o, pend_t) for o in objs]
                    pend_t = None
                else:
                    pend_o += [o for o in objs if o not in pend_o]
        if pend_o and not out:  # "only the apple": the one receptacle on the table
            recs = [o for o in self.objs if has_role(o, "receptacle")]
            if len(recs) == 1:
                out = [("pick_place", o, recs[0]) for o in pend_o]
        return out or None


def has_place_clause(toks: list[str]) -> bool:
    return bool(set(toks) & {"put", "place", "move", "set", "drop", "stick", "transfer", "grab", "lift", "carry"})


def parse(text: str, scene: Scene) -> Parse | None:
    """Ground `text` in `scene` (None: undecided, let the learned planner answer)."""
    return LanguageParser(scene).parse(text)
