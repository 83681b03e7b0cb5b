"""Applicants (申请人): Chinese names, resident ID numbers and mobile numbers — fake but well-formed.

Masking (张**, 110101********1234, 138****5678) and validation downstream only prove themselves on
data shaped like the real thing, so ID numbers carry a real region prefix, a plausible birth date
and the GB 11643 check character, and mobile numbers use allocated prefixes.
"""

from __future__ import annotations

import random
from bisect import bisect
from datetime import date
from itertools import accumulate
from operator import mul

# The most common surnames, weighted roughly by frequency (公安部 2020 姓氏统计), plus a few 复姓.
_SURNAMES = (
    ("王", 74), ("李", 72), ("张", 69), ("刘", 55), ("陈", 48), ("杨", 32), ("黄", 24), ("赵", 21),
    ("吴", 20), ("周", 19), ("徐", 15), ("孙", 15), ("马", 14), ("朱", 13), ("胡", 12), ("郭", 12),
    ("何", 11), ("林", 11), ("高", 11), ("罗", 10), ("郑", 10), ("梁", 9), ("谢", 8), ("宋", 7),
    ("唐", 7), ("许", 7), ("韩", 7), ("邓", 6), ("冯", 6), ("曹", 6), ("彭", 6), ("曾", 6), ("肖", 5),
    ("田", 5), ("董", 5), ("潘", 5), ("袁", 5), ("蔡", 5), ("蒋", 5), ("余", 5), ("于", 5), ("杜", 4),
    ("叶", 4), ("程", 4), ("魏", 4), ("苏", 4), ("吕", 4), ("丁", 4), ("任", 4), ("卢", 4), ("姚", 4),
    ("沈", 4), ("钟", 4), ("姜", 4), ("崔", 4), ("谭", 3), ("陆", 3), ("范", 3), ("汪", 3), ("廖", 3),
    ("石", 3), ("金", 3), ("韦", 3), ("贾", 3), ("夏", 3), ("付", 3), ("方", 3), ("邹", 3), ("熊", 3),
    ("白", 3), ("孟", 3), ("秦", 3), ("邱", 3), ("侯", 3), ("江", 3), ("尹", 3), ("薛", 2), ("闫", 2),
    ("段", 2), ("雷", 2), ("龙", 2), ("黎", 2), ("史", 2), ("陶", 2), ("贺", 2), ("毛", 2), ("郝", 2),
    ("顾", 2), ("龚", 2), ("邵", 2), ("万", 2), ("覃", 2), ("武", 2), ("钱", 2), ("戴", 2), ("严", 2),
    ("欧阳", 1), ("司马", 1), ("上官", 1), ("诸葛", 1),
)
_SURNAME_LIST = tuple(s for s, _ in _SURNAMES)
_SURNAME_CUM = tuple(accumulate(w for _, w in _SURNAMES))
_SURNAME_TOTAL = _SURNAME_CUM[-1]

_GIVEN = (
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉兰萍红梅鹏飞宇浩然子轩梓涵欣怡"
    "雨泽一诺思远佳琪嘉怡建国建华志强志明文博晓东晓燕海燕春梅秋菊丹丹婷婷雪莉俊杰子豪宏伟家豪"
    "振华国庆立新晨曦诗涵若曦铭泽天佑晗悦瑞琪博文宇航昊然皓轩沐阳语桐可馨紫萱亦菲慧敏淑珍桂芝"
)

# Region prefixes for birthplaces (the first six digits of the ID number are where it was issued).
_BIRTH_REGIONS = (
    "110101", "110105", "120101", "130102", "140105", "210102", "220102", "230102", "310104", "320102",
    "320506", "330102", "330106", "340104", "350102", "360102", "370102", "370202", "410105", "420106",
    "430104", "440106", "440305", "450103", "500103", "510104", "510182", "520102", "530102", "610113",
    "610402", "620102", "640104", "650102",
)

_MOBILE_PREFIXES = (
    "130", "131", "132", "133", "134", "135", "136", "137", "138", "139", "145", "147", "150", "151",
    "152", "153", "155", "156", "157", "158", "159", "166", "173", "175", "176", "177", "178", "180",
    "181", "182", "183", "184", "185", "186", "187", "188", "189", "191", "198", "199",
)

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"

# 1950-01-01 .. 2006-12-31 as ordinals: adults when the simulated cases happen.
_BIRTH_FIRST = 711858
_BIRTH_SPAN = 20819


def person_name(rng: random.Random) -> str:
    surname = _SURNAME_LIST[bisect(_SURNAME_CUM, rng.random() * _SURNAME_TOTAL)]
    rnd = rng.random
    n = len(_GIVEN)
    if rnd() < 0.72:
        return surname + _GIVEN[int(rnd() * n)] + _GIVEN[int(rnd() * n)]
    return surname + _GIVEN[int(rnd() * n)]


def id_check_char(first17: str) -> str:
    """GB 11643-1999 check character (ISO 7064 MOD 11-2)."""
    total = sum(map(mul, map(int, first17), _ID_WEIGHTS))
    return _ID_CHECK[total % 11]


def id_number(rng: random.Random, home_region: str) -> str:
    """18-character resident ID number: region, birth date, sequence, check character."""
    region = home_region if rng.random() < 0.65 else _BIRTH_REGIONS[int(rng.random() * len(_BIRTH_REGIONS))]
    born = date.fromordinal(_BIRTH_FIRST + int(rng.random() * _BIRTH_SPAN))
    first17 = f"{region}{born.year:04d}{born.month:02d}{born.day:02d}{int(rng.random() * 1000):03d}"
    return first17 + id_check_char(first17)


def mobile(rng: random.Random) -> str:
    """11-digit mainland mobile number with an allocated prefix."""
    return _MOBILE_PREFIXES[int(rng.random() * len(_MOBILE_PREFIXES))] + f"{int(rng.random() * 100_000_000):08d}"
