"""The demo community: about 20 elders in 2 communities, seeded so every run is the same."""

from __future__ import annotations

import random

from devices.catalogue import DeviceKind
from devices.registry import Community, Contact, Device, Elder, Staff

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
_GIVEN = ["秀英", "桂英", "玉兰", "建国", "德明", "淑珍", "国华", "凤兰", "志强", "文华",
          "素芬", "永福", "金凤", "春生", "丽华", "宝山", "秀兰", "振华", "爱华", "长林"]
_RELATIONS = ["儿子", "女儿", "儿媳", "女婿", "孙子", "侄女"]
_KIT = [
    (DeviceKind.SOS_BUTTON, "sos", "卧室"),
    (DeviceKind.SMART_CANE, "cane", ""),
    (DeviceKind.SMOKE_ALARM, "smoke", "厨房"),
    (DeviceKind.MOTION_SENSOR, "pir", "客厅"),
    (DeviceKind.BP_METER, "bp", "卧室"),
]
COMMUNITIES = [
    ("c-hepingli", "和平里社区", "东城区", "和平里街道", "+861064211234"),
    ("c-xinhua", "新华社区", "西城区", "新街口街道", "+861066182345"),
]


def demo_population(elders_per_community: int = 10, seed: int = 7) -> list[Community]:
    rng = random.Random(seed)
    out = []
    n = 0
    for cid, cname, district, street, line in COMMUNITIES:
        elders = []
        for k in range(elders_per_community):
            n += 1
            eid = f"E{n:04d}"
            name = _SURNAMES[n % len(_SURNAMES)] + _GIVEN[(n * 7) % len(_GIVEN)]
            contacts = []
            for p in range(1, rng.randint(1, 3) + 1):
                landline = p == 3  # the third contact is often a home landline
                phone = f"+8610{rng.randint(60000000, 69999999)}" if landline else \
                    f"+86138{rng.randint(10000000, 99999999)}"
                contacts.append(Contact(p, name[0] + rng.choice("明华军伟芳敏静丽强磊"),
                                        rng.choice(_RELATIONS), phone, can_sms=not landline))
            devices = [Device(f"{eid}-{suffix}", kind, room) for kind, suffix, room in _KIT]
            elders.append(Elder(
                eid, cid, name, f"{district}{street}{k % 6 + 1}号楼{rng.randint(1, 6)}单元"
                f"{rng.randint(1, 6)}0{rng.randint(1, 4)}室",
                phone=f"+86139{rng.randint(10000000, 99999999)}", lives_alone=rng.random() < 0.4,
                care_level=rng.choice(["self_care", "partly_dependent", "dependent"]),
                contacts=contacts, devices=devices,
            ))
        duty_phone = f"+86137{rng.randint(10000000, 99999999)}"
        staff = [Staff(f"{cid}-duty", cid, f"{cname}值班员", duty_phone)]
        out.append(Community(cid, cname, district, street, line, elders, staff))
    return out
