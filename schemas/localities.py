"""Hyderabad localities: where listings are, what they cost, and the other names people type for them.

Pure data, shared by the demo-data generator (`ops/demo_data.py`), tests, benchmarks and search
(synonyms: "Hitech City" is HITEC City). Coordinates are each locality's centre (WGS84, ±1 km);
`rate_per_sqft` is the band of asking prices for a resale/new apartment there, in rupees per square
foot of built-up area (2024-25 listings), from which other property types are priced.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Locality:
    name: str
    latitude: float
    longitude: float
    rate_per_sqft: tuple[int, int]
    synonyms: tuple[str, ...] = ()
    landmarks: tuple[str, ...] = ()
    # Mostly large plots and gated villa communities rather than apartment towers.
    villa_belt: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.synonyms)


LOCALITIES: tuple[Locality, ...] = (
    Locality(
        "Gachibowli",
        17.4401,
        78.3489,
        (9_000, 12_500),
        ("Gachibouli", "Gachi Bowli"),
        ("ISB", "DLF Cyber City", "Gachibowli Stadium", "the Outer Ring Road"),
    ),
    Locality(
        "Kondapur",
        17.4647,
        78.3636,
        (8_000, 11_000),
        ("Kondapur Village",),
        ("Botanical Garden", "Sarath City Capital Mall", "Kothaguda junction"),
    ),
    Locality(
        "Madhapur",
        17.4483,
        78.3915,
        (10_000, 14_000),
        ("Madapur",),
        ("Inorbit Mall", "Durgam Cheruvu", "Madhapur Metro station"),
    ),
    Locality(
        "HITEC City",
        17.4474,
        78.3762,
        (10_000, 14_500),
        ("Hitech City", "Hi-Tech City", "HITECH City", "Hitec", "Cyberabad"),
        ("Cyber Towers", "Mindspace", "HITEC City Metro station"),
    ),
    Locality(
        "Financial District",
        17.4156,
        78.3398,
        (9_500, 13_500),
        ("FD", "Financial Dist", "Gachibowli Financial District"),
        ("Wipro Circle", "the Outer Ring Road", "the IT SEZs"),
    ),
    Locality(
        "Nanakramguda",
        17.4177,
        78.3503,
        (9_500, 13_000),
        ("Nanakram Guda", "Nanakramguda Village"),
        ("Wipro Circle", "Financial District", "the Outer Ring Road"),
    ),
    Locality(
        "Kokapet",
        17.3960,
        78.3270,
        (10_000, 14_500),
        ("Neopolis", "Kokapet Neopolis"),
        ("Neopolis", "the Outer Ring Road", "Gandipet lake"),
        villa_belt=True,
    ),
    Locality(
        "Narsingi",
        17.3867,
        78.3578,
        (8_000, 11_000),
        ("Narsinghi",),
        ("the Narsingi ORR exit", "Gandipet", "Financial District"),
    ),
    Locality(
        "Manikonda",
        17.4050,
        78.3867,
        (6_500, 9_000),
        ("Manikonda Jagir",),
        ("Lanco Hills", "Alkapur Township", "Shaikpet"),
    ),
    Locality(
        "Puppalaguda",
        17.3950,
        78.3680,
        (7_000, 9_500),
        ("Puppalguda",),
        ("Alkapur Township", "Narsingi", "Manikonda"),
    ),
    Locality(
        "Tellapur",
        17.4576,
        78.2834,
        (6_500, 9_000),
        ("Tellapur Village",),
        ("the Outer Ring Road", "Nallagandla", "Gachibowli"),
        villa_belt=True,
    ),
    Locality(
        "Nallagandla",
        17.4660,
        78.3100,
        (7_000, 9_500),
        ("Nallagandla Village", "Nalagandla"),
        ("Aparna Sarovar", "Tellapur", "the University of Hyderabad"),
    ),
    Locality(
        "Banjara Hills",
        17.4156,
        78.4347,
        (15_000, 25_000),
        ("Banjara", "Road No. 12 Banjara Hills"),
        ("GVK One", "KBR Park", "Road No. 12"),
        villa_belt=True,
    ),
    Locality(
        "Jubilee Hills",
        17.4325,
        78.4071,
        (17_000, 30_000),
        ("Jubilee", "Jubilee Hills Road No. 36"),
        ("KBR Park", "Jubilee Hills Check Post", "Film Nagar"),
        villa_belt=True,
    ),
    Locality(
        "Begumpet",
        17.4447,
        78.4664,
        (9_000, 13_000),
        ("Begampet",),
        ("Begumpet Metro station", "Prakash Nagar", "Greenlands"),
    ),
    Locality(
        "Secunderabad",
        17.4399,
        78.4983,
        (7_000, 11_000),
        ("Secundrabad", "Secunderabad Cantonment", "Sec-bad"),
        ("Secunderabad Railway Station", "Paradise Circle", "Parade Grounds"),
    ),
    Locality(
        "Kukatpally",
        17.4849,
        78.4138,
        (6_500, 9_500),
        ("KPHB", "KPHB Colony", "Kukatpalli"),
        ("KPHB Metro station", "JNTU", "Lulu Mall"),
    ),
    Locality(
        "Miyapur",
        17.4968,
        78.3614,
        (5_500, 8_000),
        ("Miyapur X Roads",),
        ("Miyapur Metro station", "Allwyn Colony", "Hafeezpet"),
    ),
    Locality(
        "Bachupally",
        17.5449,
        78.3820,
        (5_500, 7_500),
        ("Bachupalli",),
        ("Pragathi Nagar", "Nizampet", "the Outer Ring Road"),
    ),
    Locality(
        "Kompally",
        17.5350,
        78.4850,
        (5_500, 7_500),
        ("Kompalli",),
        ("NH 44", "Suchitra Circle", "the Outer Ring Road"),
        villa_belt=True,
    ),
)

BY_NAME: dict[str, Locality] = {locality.name: locality for locality in LOCALITIES}

# Every spelling, lower-cased, to the canonical name: "hitech city" -> "HITEC City".
CANONICAL_NAME: dict[str, str] = {name.lower(): locality.name for locality in LOCALITIES for name in locality.names}
