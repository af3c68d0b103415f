"""Write the sample registry lists in this folder: ``python samples/make_samples.py``.

The people are made up; their national IDs are valid ones built by
``adapters.identity.make_id`` for region 410102 (the demo county), so the lists read
with no rejections. People overlap between lists as they would in a county: most of the
civil-affairs and veterans people are also enrolled in insurance, and one man is both a
priority-care veteran and in a minimum-allowance household. The .xlsx list has the same
rows as the civil-affairs .csv, with real date cells.
"""

from __future__ import annotations

import datetime as dt
import pathlib
import sys

from adapters.identity import make_id
from adapters.registry_files import write_table

REGION = "410102"
HERE = pathlib.Path(__file__).resolve().parent
D = dt.date

# key, code as the bureau writes it, effective from, struck off on
Row = tuple[str, str, dt.date, dt.date | None]

# key -> (name, birth date, sequence number within the birth date; odd for men, even for women)
PEOPLE: dict[str, tuple[str, dt.date, int]] = {
    "wang_xiuying": ("王秀英", D(1941, 4, 12), 22),
    "li_jianguo": ("李建国", D(1948, 9, 23), 11),
    "zhang_guilan": ("张桂兰", D(1945, 1, 30), 42),
    "liu_wei": ("刘伟", D(1972, 6, 15), 31),
    "chen_li": ("陈丽", D(1985, 11, 2), 64),
    "yang_zhiqiang": ("杨志强", D(1966, 8, 19), 15),
    "huang_juan": ("黄娟", D(1990, 2, 27), 28),
    "zhao_ming": ("赵明", D(1958, 12, 5), 53),
    "wu_yumei": ("吴玉梅", D(1962, 7, 14), 46),
    "zhou_ping": ("周平", D(1979, 3, 8), 37),
    "xu_hai": ("徐海", D(1969, 10, 21), 19),
    "sun_feng": ("孙凤", D(1983, 5, 16), 82),
    "ma_jun": ("马军", D(1955, 4, 4), 13),
    "zhu_hongxia": ("朱红霞", D(2012, 8, 30), 24),
    "hu_yong": ("胡勇", D(1975, 1, 11), 57),
    "guo_jianhua": ("郭建华", D(1952, 2, 18), 33),
    "he_zhiwen": ("何志文", D(1960, 11, 9), 71),
    "lin_de": ("林德", D(1949, 6, 25), 17),
    "luo_xiulan": ("罗秀兰", D(1950, 3, 3), 48),
    "gao_bin": ("高斌", D(1957, 9, 12), 35),
    "xie_ning": ("谢宁", D(1994, 12, 1), 26),
    "song_tao": ("宋涛", D(1988, 7, 7), 91),
    "tang_jing": ("唐静", D(2026, 2, 14), 4),
}

CIVIL_AFFAIRS: list[Row] = [
    ("wang_xiuying", "特困", D(2019, 3, 1), None),
    ("li_jianguo", "特困供养", D(2021, 7, 1), None),
    ("zhang_guilan", "五保", D(2016, 1, 1), None),
    ("liu_wei", "低保", D(2023, 5, 1), None),
    ("chen_li", "低保", D(2024, 2, 1), None),
    ("yang_zhiqiang", "低保", D(2024, 3, 1), D(2026, 6, 1)),
    ("huang_juan", "低保边缘", D(2025, 1, 1), None),
    ("zhao_ming", "低保边缘", D(2025, 9, 1), None),
    ("wu_yumei", "低收入", D(2025, 4, 1), None),
    ("zhou_ping", "低收入", D(2026, 1, 1), None),
    ("xu_hai", "因病致贫", D(2026, 3, 1), None),
    ("sun_feng", "支出型困难", D(2026, 5, 1), None),
    ("ma_jun", "低保", D(2022, 10, 1), None),
    ("zhu_hongxia", "低保", D(2024, 2, 1), None),
    ("hu_yong", "特困", D(2026, 6, 1), None),
]

VETERANS: list[Row] = [
    ("ma_jun", "其他优抚对象", D(2020, 8, 1), None),
    ("guo_jianhua", "伤残军人3级", D(2010, 5, 1), None),
    ("he_zhiwen", "残疾军人", D(2018, 8, 1), None),
    ("lin_de", "伤残军人一级", D(2005, 1, 1), None),
    ("luo_xiulan", "烈士遗属", D(2012, 4, 1), None),
    ("gao_bin", "在乡复员军人", D(2015, 10, 1), None),
]

_INSURED = [
    "wang_xiuying",
    "li_jianguo",
    "liu_wei",
    "chen_li",
    "yang_zhiqiang",
    "huang_juan",
    "zhao_ming",
    "wu_yumei",
    "zhou_ping",
    "xu_hai",
    "sun_feng",
    "ma_jun",
    "zhu_hongxia",
    "guo_jianhua",
    "he_zhiwen",
    "luo_xiulan",
    "gao_bin",
    "xie_ning",
    "song_tao",
]
INSURANCE: list[Row] = [
    (key, "居民医保" if index % 4 == 3 else "城乡居民", D(2026, 1, 1), None) for index, key in enumerate(_INSURED)
]
INSURANCE.append(("tang_jing", "城乡居民", D(2026, 3, 1), None))  # born in February, enrolled from March

# file name -> (the header of its third column, rows)
FILES: dict[str, tuple[str, list[Row]]] = {
    "civil-affairs-2026-06.csv": ("类别", CIVIL_AFFAIRS),
    "civil-affairs-2026-06.xlsx": ("类别", CIVIL_AFFAIRS),
    "veterans-2026-06.csv": ("优抚类别", VETERANS),
    "insurance-2026.csv": ("参保类型", INSURANCE),
}


def national_id(key: str) -> str:
    _, birth, sequence = PEOPLE[key]
    return make_id(REGION, birth, sequence)


def write_samples(folder: pathlib.Path) -> list[pathlib.Path]:
    written = []
    for file_name, (code_header, rows) in FILES.items():
        path = folder / file_name
        header = ("身份证号码", "姓名", code_header, "认定日期", "退出日期")
        write_table(
            path,
            header,
            [(national_id(key), PEOPLE[key][0], code, start, end) for key, code, start, end in rows],
        )
        written.append(path)
    return written


if __name__ == "__main__":
    folder = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    for path in write_samples(folder):
        print(path)
