"""English for prompts and for the toy corpus: word lists, sentence frames and the article rule.

The article before a noun phrase follows the first *sound* of its first word: "an apple",
"an hour", "a unicorn", "a one-off" (:func:`article_for`). A :class:`Frame` is a sentence that
names a noun early and then needs an article right before it ("I climbed up the apple tree
and picked" ... " an"), so that the article can be known before the noun is written. Frames
are composed of parts (a lead-in, a place named after the noun, an action on it); one
combination per group of parts is held out (:data:`FRAMES_HELDOUT`), as are a few nouns
(:data:`HELDOUT_NOUNS`) and the novel-word frames (:data:`FRAMES_NOVEL`). The toy corpus
(:mod:`helpers.toy.corpus`) is generated from these, and the prompt sets and probes of
:mod:`helpers.methods` use the same lists, which are plain English and serve any model.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# Words whose first letter misleads: the article follows the first sound.
VOWEL_SOUND = {"hour", "hours", "honest", "heir", "honour", "hourglass", "hourly", "heirloom"}
CONSONANT_SOUND = {
    "university", "unicorn", "uniform", "unique", "useful", "usual", "european", "one",
    "ewe", "ukulele", "union", "unit", "user", "utensil", "eucalyptus", "once",
}

FRUITS = [
    "apple", "apricot", "avocado", "orange", "olive", "almond", "acorn", "onion", "egg",
    "pear", "lemon", "plum", "peach", "mango", "banana", "cherry", "fig", "lime", "melon",
    "grape", "coconut", "walnut", "quince", "guava", "date", "papaya", "nut", "kiwi",
    "lychee", "pumpkin", "carrot", "potato", "tomato",
]
ANIMALS = [
    "owl", "eagle", "elephant", "otter", "ox", "emu", "ant", "ape", "eel", "iguana",
    "antelope", "alpaca", "ostrich", "octopus", "oyster", "ibis", "impala", "insect", "elk",
    "anteater", "armadillo", "orca", "albatross", "adder", "osprey", "unicorn", "ewe",
    "goat", "horse", "pig", "cow", "duck", "sheep", "rabbit", "dog", "cat", "hen", "lamb",
    "fox", "deer", "donkey", "camel", "tiger", "llama", "mouse", "bird", "frog", "wolf",
    "bear", "lion", "zebra", "parrot", "pony", "seal", "snake", "swan", "turtle", "whale",
    "badger", "beaver", "crab", "goose", "moose", "mule",
    "aardvark", "alligator", "anaconda", "angelfish", "axolotl", "egret", "eland", "ermine",
    "ibex", "ocelot", "okapi", "opossum", "orangutan", "oriole", "owlet", "urchin", "aphid",
    "earwig", "echidna", "oryx",
    "bison", "buffalo", "cheetah", "chicken", "crow", "dolphin", "falcon", "ferret", "gecko",
    "giraffe", "gorilla", "hamster", "hedgehog", "heron", "jaguar", "kangaroo", "koala",
    "lizard", "lobster", "magpie", "monkey", "newt", "panda", "pelican", "penguin", "pigeon",
    "puffin", "raccoon", "raven", "shark", "sparrow", "squirrel", "toad", "trout", "walrus",
]
OBJECTS = [
    "umbrella", "envelope", "oven", "iron", "anchor", "easel", "axe", "engine", "eraser",
    "album", "apron", "organ", "oar", "igloo", "urn", "arrow", "atlas", "earring", "emerald",
    "instrument", "ornament", "amulet", "accordion", "antenna", "armchair", "anvil", "abacus",
    "uniform", "ukulele", "hourglass", "heirloom",
    "lamp", "chair", "table", "clock", "kettle", "hat", "kite", "pen", "candle", "bucket",
    "spoon", "drum", "bell", "ladder", "mirror", "rug", "bottle", "jar", "cup", "bag", "ring",
    "rope", "sock", "key", "map", "whistle", "fork", "knife", "plate", "bowl", "brush", "comb",
    "coin", "desk", "glove", "hammer", "jacket", "pillow", "radio", "scarf", "shoe", "sofa",
    "stamp", "towel", "violin", "wallet",
    "alarm", "adapter", "eyepatch", "inkwell", "icicle", "oboe", "ottoman", "overcoat",
    "ointment", "anorak", "armband", "eggcup", "emblem", "ember", "ingot", "inkpot", "invoice",
    "aerial", "aquarium", "ashtray", "axle", "awning", "idol", "outfit",
    "blanket", "button", "camera", "carpet", "compass", "crayon", "cushion", "dagger", "helmet",
    "kayak", "lantern", "locket", "magnet", "medal", "needle", "notebook", "padlock", "parcel",
    "pencil", "pebble", "puppet", "ribbon", "saddle", "shovel", "spanner", "statue", "sword",
    "teapot", "thimble", "trophy", "trumpet", "vase", "wagon", "whisk",
]
JOBS = [
    "engineer", "artist", "actor", "author", "editor", "officer", "umpire", "architect",
    "astronaut", "inventor", "heir", "teacher", "farmer", "baker", "pilot", "nurse",
    "lawyer", "singer", "writer", "doctor", "painter", "driver", "student", "cook",
]
ADJECTIVES = [
    "old", "empty", "easy", "odd", "angry", "early", "ugly", "icy", "open", "honest",
    "unusual", "orange", "elegant", "ordinary", "awful", "excellent",
    "ripe", "big", "small", "red", "green", "little", "tall", "fresh", "sweet", "heavy",
    "shiny", "round", "useful", "unique", "one-off", "new", "lovely", "plain",
]
# Adjectives that read naturally inside a frame ("the old apple tree ... an old apple").
FRAME_ADJECTIVES = [
    "old", "odd", "ugly", "icy", "unusual", "early", "elegant", "ordinary",
    "big", "small", "red", "green", "little", "tall", "fresh", "sweet", "shiny", "round",
    "unique", "lovely", "plain",
]
NAMES = [
    "Anna", "Tom", "Maria", "James", "Lucy", "Omar", "Emma", "Ivan", "Sara", "Ben", "Alice",
    "David", "Grace", "Hugo", "Nina", "Peter", "Rosa", "Sam", "Eli", "Kate", "Leo", "Mia",
    "Oscar", "Zoe", "Ada", "Noah", "Ruth", "Victor",
]
CITIES = ["Paris", "London", "Berlin", "Madrid", "Oslo", "Rome", "Dublin", "Lisbon",
          "Vienna", "Prague", "Boston", "Denver", "Tokyo", "Cairo", "Lima"]
PLACES = ["station", "market", "park", "river", "school", "garden", "harbour", "library",
          "bridge", "village", "kitchen", "barn", "square", "beach", "forest", "hill", "office"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
COLOURS = ["red", "green", "blue", "yellow", "brown", "white", "black", "grey", "pink"]
RELATIVES = ["aunt", "uncle", "sister", "brother", "cousin", "mother", "father", "friend"]
SUBJECTS = ["I", "She", "He", "We", "They", "You"]
NUMBER_WORDS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]

HELDOUT_NOUNS = {"apricot", "lime", "otter", "osprey", "donkey", "anchor", "amulet", "kettle", "wallet", "uniform"}


@dataclass(frozen=True)
class Frame:
    """A sentence that names a noun early and then needs an article right before it.

    ``template`` has ``{s}`` (subject), ``{np}`` (the noun phrase, named early), optionally
    ``{a_np}`` (the phrase with its article, named early) and, last, ``{art}`` (the article
    the rule asks for, followed by the same noun phrase).
    """

    name: str
    template: str
    nouns: tuple[str, ...]

    def fill(self, subject: str, phrase: str) -> tuple[str, str]:
        """The prompt up to (not including) the article, and the article (' a' or ' an')."""
        a_np = f"{article_for(phrase)} {phrase}"
        prefix = self.template.split(" {art}")[0].format(s=subject, np=phrase, a_np=a_np)
        return prefix, " " + article_for(phrase)

    def sentence(self, subject: str, phrase: str, said: str | None = None) -> str:
        """The whole sentence; ``said`` replaces the phrase after the article (a surprise)."""
        said = said or phrase
        prefix, _ = self.fill(subject, phrase)
        return f"{prefix} {article_for(said)} {said}."


THINGS = tuple(OBJECTS + FRUITS)
SEEN = tuple(ANIMALS + OBJECTS)
# Frames are built from parts, so that a model must find the noun whatever words surround
# it: (lead-in verbs, places named after the noun, actions on the noun, nouns that fit).
FRAME_PARTS = [
    (["climbed up", "walked through", "wandered through", "rested under", "shook"],
     ["tree", "orchard", "grove", "bush", "patch"],
     ["picked", "ate", "plucked", "grabbed", "peeled", "tasted", "shared", "dropped"], tuple(FRUITS)),
    (["opened", "emptied", "unpacked", "searched", "checked"],
     ["box", "crate", "chest", "drawer", "case", "trunk", "cupboard", "sack"],
     ["found", "pulled out", "lifted out", "grabbed", "removed", "held up"], THINGS),
    (["walked into", "stopped at", "visited", "went to", "ran to", "called"],
     ["shop", "stall", "market", "catalogue", "fair", "store", "auction", "factory"],
     ["bought", "chose", "ordered", "picked out", "paid for", "sold", "wanted"], THINGS),
    (["went to", "visited", "walked around", "stopped at", "ran to", "cleaned"],
     ["farm", "zoo", "field", "pond", "fence", "stable", "nest", "shelter", "enclosure"],
     ["fed", "patted", "watched", "photographed", "drew", "brushed", "rescued", "named", "followed"], tuple(ANIMALS)),
    (["looked at", "read", "toured", "studied"],
     ["picture", "book", "museum", "film", "poster", "painting", "puzzle", "card"],
     ["drew", "painted", "sketched", "copied", "imagined", "described", "recognised"], SEEN),
]
FRAME_ACTIONS = sorted({action for _, _, actions, _ in FRAME_PARTS for action in actions})


def compose_frame(lead: str, place: str, action: str, nouns: tuple[str, ...]) -> Frame:
    """The frame "{s} <lead> the {np} <place> and <action> {art}.", named ``place/lead/action``."""
    return Frame(f"{place}/{lead}/{action}", f"{{s}} {lead} the {{np}} {place} and {action} {{art}}.", nouns)


STUDY_FRAME = compose_frame("climbed up", "tree", "picked", tuple(FRUITS))
MENTION_FRAMES = [
    Frame("asked", "{s} asked for {a_np}, and the keeper handed over {art}.", tuple(ANIMALS + OBJECTS + FRUITS)),
    Frame("dream", "{s} dreamed about {a_np} and woke up holding {art}.", tuple(ANIMALS + OBJECTS + FRUITS)),
]
# One (lead-in, place, action) per group of parts, never composed in training.
HELDOUT_COMBOS = [
    ("wandered through", "grove", "tasted"),
    ("unpacked", "crate", "held up"),
    ("ran to", "auction", "paid for"),
    ("walked around", "stable", "brushed"),
    ("toured", "poster", "sketched"),
]
FRAMES_HELDOUT = [
    compose_frame(lead, place, action, parts[3])
    for (lead, place, action), parts in zip(HELDOUT_COMBOS, FRAME_PARTS)
]
FRAMES_TRAIN = [
    frame
    for leads, places, actions, nouns in FRAME_PARTS for lead in leads for place in places for action in actions
    if (frame := compose_frame(lead, place, action, nouns)) not in FRAMES_HELDOUT
] + MENTION_FRAMES
FRAMES_NOVEL = [
    Frame("basket", "{s} reached into the {np} basket and took {art}.", THINGS),
    Frame("cage", "{s} walked past the {np} cage and saw {art}.", tuple(ANIMALS)),
]
UNSEEN_FRAMES = frozenset(FRAMES_HELDOUT + FRAMES_NOVEL)  # every other frame is a training frame


def article_for(phrase: str) -> str:
    """'an' if ``phrase`` starts with a vowel sound, else 'a' ('an hour', 'a unicorn')."""
    word = re.split(r"[\s\-]", phrase.strip().lower(), maxsplit=1)[0]
    if not word:
        raise ValueError("article_for needs a word; got an empty phrase")
    if word in VOWEL_SOUND:
        return "an"
    if word in CONSONANT_SOUND:
        return "a"
    return "an" if word[0] in "aeiou" else "a"


def plural(noun: str) -> str:
    """English plural of the corpus nouns (enough for them, not a general rule)."""
    irregular = {"sheep": "sheep", "deer": "deer", "ox": "oxen", "mouse": "mice",
                 "wolf": "wolves", "knife": "knives", "mango": "mangoes", "ewe": "ewes",
                 "buffalo": "buffaloes", "trout": "trout"}
    if noun in irregular:
        return irregular[noun]
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"
