"""Built-in prompt material: IOI templates and word lists (Wang et al. 2022 style), and a curated set of facts.

Names, places and answers are filtered by the model's tokenizer at load time: only those that are one token with
their leading space are used, so the answer is always a single next token.
"""
from __future__ import annotations

# IOI: the indirect object (IO) is the answer, the subject (S) is named twice. {IO}/{S} order in the first clause
# decides ABBA (IO first) vs BABA (S first).
# {A_OBJECT} is the object with its article ("a ring", "an apple").
IOI_TEMPLATES = [
    "Then, {A} and {B} went to the {PLACE}. {S} gave {A_OBJECT} to",
    "When {A} and {B} got {A_OBJECT} at the {PLACE}, {S} decided to give it to",
    "After {A} and {B} went to the {PLACE}, {S} gave {A_OBJECT} to",
    "While {A} and {B} were working at the {PLACE}, {S} gave {A_OBJECT} to",
    "Friends {A} and {B} found {A_OBJECT} at the {PLACE}. {S} gave it to",
    "The {PLACE} was quiet when {A} and {B} arrived. {S} handed the {OBJECT} to",
    "{A} and {B} had a long argument at the {PLACE}. Afterwards {S} said to",
    "Yesterday {A} and {B} visited the {PLACE}, and {S} brought {A_OBJECT} for",
]
NAMES = (
    "Mary John Alice Bob James Michael David Sarah Emma Daniel Paul Mark Lisa Anna Kevin Laura Jessica Thomas Robert "
    "Jennifer Brittany Rachel Steven Andrew Joseph Christopher Patrick Amy Kate Tom Jack Sam Max Luke Adam Eric Brian "
    "Jason Ryan Dan Chris Peter George Frank Henry Helen Grace Rose Jane Lucy Emily Sophie Alex Nick Tim Ben Joe Anne "
    "Claire Victoria Jonathan Samuel Charles Edward Kelly Amanda Megan"
).split()
def fill(template: str, a: str, b: str, s: str, place: str, obj: str) -> str:
    """An IOI template with its names, place and object; the object's article agrees with it ("an apple")."""
    article = "an" if obj[0].lower() in "aeiou" else "a"
    return template.format(A=a, B=b, S=s, PLACE=place, OBJECT=obj, A_OBJECT=f"{article} {obj}")


PLACES = "store garden restaurant school hospital station office house park market library church beach".split()
OBJECTS = "ring kiss bone basketball computer necklace drink snack apple book flower bottle".split()

# (country, capital, official language, continent)
COUNTRIES = [
    ("France", "Paris", "French", "Europe"), ("Spain", "Madrid", "Spanish", "Europe"),
    ("Germany", "Berlin", "German", "Europe"), ("Italy", "Rome", "Italian", "Europe"),
    ("Portugal", "Lisbon", "Portuguese", "Europe"), ("Greece", "Athens", "Greek", "Europe"),
    ("Russia", "Moscow", "Russian", "Europe"), ("Poland", "Warsaw", "Polish", "Europe"),
    ("Sweden", "Stockholm", "Swedish", "Europe"), ("Norway", "Oslo", "Norwegian", "Europe"),
    ("Finland", "Helsinki", "Finnish", "Europe"), ("Denmark", "Copenhagen", "Danish", "Europe"),
    ("Netherlands", "Amsterdam", "Dutch", "Europe"), ("Austria", "Vienna", "German", "Europe"),
    ("Hungary", "Budapest", "Hungarian", "Europe"), ("Ireland", "Dublin", "English", "Europe"),
    ("Ukraine", "Kiev", "Ukrainian", "Europe"), ("Romania", "Bucharest", "Romanian", "Europe"),
    ("Turkey", "Ankara", "Turkish", "Asia"), ("Japan", "Tokyo", "Japanese", "Asia"),
    ("China", "Beijing", "Chinese", "Asia"), ("India", "New Delhi", "Hindi", "Asia"),
    ("Thailand", "Bangkok", "Thai", "Asia"), ("Vietnam", "Hanoi", "Vietnamese", "Asia"),
    ("Korea", "Seoul", "Korean", "Asia"), ("Iran", "Tehran", "Persian", "Asia"),
    ("Iraq", "Baghdad", "Arabic", "Asia"), ("Israel", "Jerusalem", "Hebrew", "Asia"),
    ("Pakistan", "Islamabad", "Urdu", "Asia"), ("Indonesia", "Jakarta", "Indonesian", "Asia"),
    ("Philippines", "Manila", "Filipino", "Asia"), ("Syria", "Damascus", "Arabic", "Asia"),
    ("Lebanon", "Beirut", "Arabic", "Asia"), ("Afghanistan", "Kabul", "Pashto", "Asia"),
    ("Egypt", "Cairo", "Arabic", "Africa"), ("Kenya", "Nairobi", "Swahili", "Africa"),
    ("Nigeria", "Abuja", "English", "Africa"), ("Ethiopia", "Addis Ababa", "Amharic", "Africa"),
    ("Morocco", "Rabat", "Arabic", "Africa"), ("Ghana", "Accra", "English", "Africa"),
    ("Sudan", "Khartoum", "Arabic", "Africa"), ("Libya", "Tripoli", "Arabic", "Africa"),
    ("Canada", "Ottawa", "English", "America"), ("Mexico", "Mexico City", "Spanish", "America"),
    ("Brazil", "Brasilia", "Portuguese", "America"), ("Argentina", "Buenos Aires", "Spanish", "America"),
    ("Chile", "Santiago", "Spanish", "America"), ("Peru", "Lima", "Spanish", "America"),
    ("Cuba", "Havana", "Spanish", "America"), ("Colombia", "Bogota", "Spanish", "America"),
    ("Venezuela", "Caracas", "Spanish", "America"), ("Jamaica", "Kingston", "English", "America"),
    ("Australia", "Canberra", "English", "Oceania"), ("Fiji", "Suva", "English", "Oceania"),
]
# relation -> (prompt template with {subject}, subject field, answer field)
FACT_RELATIONS = {
    "capital_of": ("{capital} is the capital of", "capital", "country"),
    "located_in": ("{capital} is located in", "capital", "country"),
    "language": ("The official language of {country} is", "country", "language"),
    "continent": ("{country} is a country in", "country", "continent"),
}


def builtin_facts() -> list[dict[str, str]]:
    """Every (relation, country) fact: {"prompt", "subject", "answer" (with its leading space), "type"}."""
    facts = []
    for country, capital, language, continent in COUNTRIES:
        fields = {"country": country, "capital": capital, "language": language, "continent": continent}
        for relation, (template, subject, answer) in FACT_RELATIONS.items():
            if relation == "continent" and continent == "America":
                continue  # North or South: no single right answer
            facts.append({"prompt": template.format(**fields), "subject": fields[subject], "answer": " " + fields[answer], "type": relation})
    return facts
