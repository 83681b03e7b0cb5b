"""Masking personal data (个人信息脱敏) in everything alerting sends or shows.

Findings are written without personal data, but a message travels through mail servers, SMS
gateways and phones we do not control, so every rendered text is scanned once more: 18- and 15-digit
ID numbers and 11-digit mobile numbers are masked wherever they appear, and names after a label
(申请人：张三) as well. Masked forms follow the usual practice of Chinese government systems:
names keep the surname (张**), ID numbers the first 6 and last 4 (110101********1234), mobiles the
first 3 and last 4 (138****5678).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Two-character surnames (复姓) that are still common; the surname is kept whole.
_COMPOUND_SURNAMES = frozenset(
    "欧阳 司马 上官 诸葛 东方 皇甫 尉迟 公孙 慕容 长孙 宇文 司徒 夏侯 轩辕 令狐 钟离 端木 独孤 南宫 西门 万俟 闻人 呼延 申屠".split()
)

# 18-digit resident ID (GB 11643): region(6) birth date(8) sequence(3) check(digit or X).
# The birth-date shape keeps ordinary 18-digit case numbers from being mangled.
_ID18 = re.compile(
    r"(?<![0-9])([1-9][0-9]{5})((?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01]))([0-9]{3}[0-9Xx])(?![0-9Xx])"
)
# 15-digit ID numbers issued before 1999: region(6) yymmdd(6) sequence(3).
_ID15 = re.compile(
    r"(?<![0-9])([1-9][0-9]{5})([0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01]))([0-9]{3})(?![0-9Xx])"
)
# Mainland mobile numbers, optionally with +86 / 86 and separators.
_MOBILE = re.compile(r"(?<![0-9])((?:\+?86)[- ]?)?(1[3-9][0-9])[- ]?([0-9]{4})[- ]?([0-9]{4})(?![0-9])")
# A name after a label that introduces a person.
_LABELLED_NAME = re.compile(
    r"(申请人|经办人|联系人|办事人|当事人|投诉人|代理人|法定代表人|姓名)(\s*[:：]?\s*)([\u4e00-\u9fff]{2,4})(?![\u4e00-\u9fff*])"
)


def mask_name(name: str) -> str:
    """张三 → 张*, 张三丰 → 张**, 欧阳娜娜 → 欧阳**: the surname stays so the reader knows who is meant."""
    name = name.strip()
    if not name:
        return name
    keep = 2 if name[:2] in _COMPOUND_SURNAMES and len(name) > 2 else 1
    return name[:keep] + "*" * max(1, len(name) - keep)


def mask_id_number(value: str) -> str:
    """110101199003071234 → 110101********1234 (first 6, last 4); 15-digit numbers alike."""
    v = value.strip()
    if len(v) <= 10:
        return "*" * len(v)
    return v[:6] + "*" * (len(v) - 10) + v[-4:]


def mask_phone(value: str) -> str:
    """13812345678 → 138****5678; a number too short to be a mobile is masked but for the last 4."""
    digits = re.sub(r"[^0-9]", "", value)
    if len(digits) >= 11:
        digits = digits[-11:]
        return digits[:3] + "****" + digits[-4:]
    if len(digits) <= 4:
        return "*" * len(digits)
    return "*" * (len(digits) - 4) + digits[-4:]


def mask_email(value: str) -> str:
    """zhangsan@example.gov.cn → z***@example.gov.cn: for logs, where a full address is not needed."""
    local, sep, domain = value.partition("@")
    if not sep:
        return mask_phone(value)
    return (local[:1] + "***" if local else "***") + "@" + domain


def mask_text(text: str, names: Iterable[str] = ()) -> str:
    """Mask every ID number, mobile number, labelled name and given name in free text."""
    if not text:
        return text
    for name in sorted({n.strip() for n in names if n and len(n.strip()) >= 2}, key=len, reverse=True):
        text = text.replace(name, mask_name(name))
    text = _ID18.sub(lambda m: mask_id_number(m.group(0)), text)
    text = _ID15.sub(lambda m: mask_id_number(m.group(0)), text)
    text = _MOBILE.sub(lambda m: (m.group(1) or "") + m.group(2) + "****" + m.group(4), text)
    text = _LABELLED_NAME.sub(lambda m: m.group(1) + m.group(2) + mask_name(m.group(3)), text)
    return text


def find_unmasked(text: str) -> list[str]:
    """Everything in ``text`` that still looks like an ID or mobile number: must be empty before sending."""
    return [m.group(0) for rx in (_ID18, _ID15, _MOBILE) for m in rx.finditer(text)]
