"""Write the sample registry lists and the sample item catalogue in this folder: ``python samples/make_samples.py``.

The people are made up; their national IDs are valid ones built by
``adapters.identity.make_id`` for region 410102 (the demo county), so the lists read
with no rejections. People overlap between lists as they would in a county: most of the
civil-affairs and veterans people are also enrolled in insurance, and one man is both a
priority-care veteran and in a minimum-allowance household. The .xlsx list has the same
rows as the civil-affairs .csv, with real date cells.

The item catalogue holds every item the demo county bills (benchmarks/county.py's lists, the sample
bills and the OpenAPI example) with the category those send. The .csv writes categories, shares and
caps as an insurer's export does (乙类, 20%, 450.00); the .xlsx the same catalogue with letters and
number cells.
"""

from __future__ import annotations

import datetime as dt
import pathlib
import sys
from decimal import Decimal

from adapters.catalogue_files import SAMPLE_HEADER as CATALOGUE_HEADER
from adapters.identity import make_id
from adapters.table_files import write_table

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


# The item catalogue in force from 2026-01-01: code, name, category, the B item's own self-pay-first share
# (None: the policy's 10 %), unit, price cap per unit in yuan (None: no cap). Caps sit above the prices
# benchmarks/county.py bills, except M-PLATE-001's: a plate dearer than 12,000.00 yuan shows over-limit
# self-pay (超限价自付). The worked example's MAT-002 keeps the policy's share, and the sample bills' items
# (no unit prices) have no cap.
CatalogueEntry = tuple[str, str, str, Decimal | None, str, Decimal | None]
CATALOGUE: list[CatalogueEntry] = [
    # samples/bill-*.json and the OpenAPI example (docs/worked-examples.md)
    ("DRUG-001", "头孢曲松钠 ceftriaxone (worked example)", "A", None, "支", None),
    ("MAT-002", "冠脉支架 stent (worked example)", "B", None, "个", None),
    ("SVC-003", "单人病房 single room (worked example)", "C", None, "日", None),
    ("SURG-001", "心脏手术 cardiac surgery", "A", None, "次", None),
    # benchmarks/county.py: consultations, outpatient items, per-day charges, inpatient items, operations
    ("110200001", "一般诊疗费 general consultation", "A", None, "次", Decimal("12.00")),
    ("110200002", "门诊诊查费 outpatient consultation", "A", None, "次", None),
    ("110200003", "副主任医师诊查费 senior consultation", "A", None, "次", None),
    ("XJ01CAA040A001", "阿莫西林胶囊 amoxicillin 0.25 g × 24", "A", None, "盒", None),
    ("XN02BEA010A001", "对乙酰氨基酚片 paracetamol 0.5 g × 20", "A", None, "盒", None),
    ("XM01AEA010A001", "布洛芬缓释胶囊 ibuprofen SR 0.3 g × 20", "A", None, "盒", None),
    ("XA10BAA020A001", "二甲双胍片 metformin 0.5 g × 48", "A", None, "盒", None),
    ("XC08CAA010A001", "硝苯地平缓释片 nifedipine SR 20 mg × 30", "A", None, "盒", None),
    ("XB05BBA010B002", "氯化钠注射液 sodium chloride 0.9 % 250 ml", "A", None, "袋", None),
    ("XB05BAA020B002", "葡萄糖注射液 glucose 5 % 250 ml", "A", None, "袋", None),
    ("120400002", "静脉输液 intravenous infusion", "A", None, "次", None),
    ("120400001", "肌肉注射 intramuscular injection", "A", None, "次", None),
    ("250305001", "血糖测定 blood glucose", "A", None, "次", None),
    ("XR05CBA010A001", "氨溴索口服液 ambroxol oral solution 100 ml", "B", None, "瓶", None),
    ("XJ01DDA090B001", "头孢曲松钠 ceftriaxone 1 g for injection", "B", Decimal("0.05"), "支", None),
    ("ZA04AAA0001", "板蓝根颗粒 banlangen granules 10 g × 20", "B", None, "盒", None),
    ("ZD01CAA0002", "藿香正气水 huoxiang zhengqi liquid 10 ml × 10", "B", None, "盒", None),
    ("C-VIT-001", "复合维生素片 multivitamin × 60", "C", None, "瓶", None),
    ("250101001", "血常规 complete blood count", "A", None, "次", None),
    ("250301001", "肝功能 liver function panel", "A", None, "项", None),
    ("250302001", "肾功能 kidney function panel", "A", None, "项", None),
    ("310701001", "心电图 electrocardiogram", "A", None, "次", None),
    ("220600001", "腹部彩超 abdominal ultrasound", "B", Decimal("0.20"), "次", Decimal("150.00")),
    ("210100001", "胸部X线摄影 chest X-ray", "A", None, "次", Decimal("90.00")),
    ("XC10AAA050A001", "阿托伐他汀钙片 atorvastatin 20 mg × 28", "A", None, "盒", None),
    ("XB01ACA060A001", "阿司匹林肠溶片 aspirin 100 mg × 30", "A", None, "盒", None),
    ("XC09CAA010A001", "氯沙坦钾片 losartan 50 mg × 28", "B", Decimal("0.05"), "盒", None),
    ("XA10BBA090A001", "格列美脲片 glimepiride 2 mg × 30", "B", None, "盒", None),
    ("ZA12BAA0001", "复方丹参滴丸 compound danshen pills × 180", "B", None, "盒", None),
    ("340200001", "针灸 acupuncture", "B", None, "次", None),
    ("120100001", "门诊换药 dressing change", "A", None, "次", None),
    ("C-GLU-001", "血糖试纸 glucose test strips × 50", "C", None, "盒", None),
    ("210300001", "CT平扫 CT scan", "B", Decimal("0.20"), "部位", Decimal("450.00")),
    ("210400001", "磁共振 MRI scan", "B", Decimal("0.20"), "部位", Decimal("850.00")),
    ("310300001", "胃镜检查 gastroscopy", "B", None, "次", Decimal("380.00")),
    ("250303001", "血脂四项 lipid panel", "A", None, "项", None),
    ("250305003", "糖化血红蛋白 HbA1c", "B", None, "项", None),
    ("XA10AEA040B001", "甘精胰岛素注射液 insulin glargine 3 ml", "B", Decimal("0.05"), "支", Decimal("230.00")),
    ("XB01ACA040A001", "氯吡格雷片 clopidogrel 75 mg × 7", "B", None, "盒", Decimal("95.00")),
    ("C-EXP-001", "特需专家门诊 premium expert consultation (self-paid)", "C", None, "次", None),
    ("C-HLT-002", "保健食品 health supplement", "C", None, "盒", None),
    ("110900001", "住院诊查费 inpatient consultation (per day)", "A", None, "日", None),
    ("120100002", "床位费 ward bed (per day)", "A", None, "日", Decimal("60.00")),
    ("120100011", "二级护理 level-2 nursing (per day)", "A", None, "日", None),
    ("250403001", "凝血四项 coagulation panel", "A", None, "项", None),
    ("XJ01XDA010B001", "甲硝唑注射液 metronidazole 0.5 g 100 ml", "A", None, "瓶", None),
    ("XA02BCA030B001", "泮托拉唑钠 pantoprazole 40 mg for injection", "B", None, "支", None),
    ("XN02AXA060B001", "氟比洛芬酯注射液 flurbiprofen axetil 50 mg", "B", None, "支", None),
    ("311300001", "一次性输液器 disposable infusion set", "A", None, "套", None),
    ("C-ROOM-001", "单间差价 private room upgrade (per day)", "C", None, "日", None),
    ("C-CARE-001", "陪护费 attendant (self-paid, per day)", "C", None, "日", None),
    ("270300001", "病理检查 histopathology", "A", None, "例", None),
    ("XJ01DHA020B001", "美罗培南 meropenem 0.5 g for injection", "B", Decimal("0.15"), "支", Decimal("95.00")),
    ("250102001", "血气分析 blood gas analysis", "A", None, "次", None),
    ("250304001", "心肌酶谱 cardiac enzymes", "A", None, "项", None),
    ("310603001", "持续吸氧 oxygen therapy (per hour)", "A", None, "小时", Decimal("4.50")),
    ("310602001", "雾化吸入 nebulisation", "A", None, "次", None),
    ("340200011", "康复训练 rehabilitation session", "B", Decimal("0.15"), "次", None),
    ("331003001", "阑尾切除术 appendectomy", "A", None, "次", None),
    ("331008001", "腹股沟疝修补术 inguinal hernia repair", "A", None, "次", None),
    ("330200001", "椎管内麻醉 spinal anaesthesia", "A", None, "次", None),
    ("M-MESH-001", "疝修补补片 hernia mesh", "B", Decimal("0.20"), "片", Decimal("3200.00")),
    ("331003002", "腹腔镜阑尾切除术 laparoscopic appendectomy", "A", None, "次", None),
    ("331005004", "腹腔镜胆囊切除术 laparoscopic cholecystectomy", "B", None, "次", Decimal("6500.00")),
    ("330604001", "白内障超声乳化术 phacoemulsification", "B", None, "次", Decimal("4200.00")),
    ("331505001", "股骨骨折内固定术 femoral fracture fixation", "B", None, "次", Decimal("8500.00")),
    ("330200003", "全身麻醉 general anaesthesia", "A", None, "次", None),
    ("C-IOL-001", "进口人工晶体 imported intraocular lens", "C", None, "个", None),
    ("M-PLATE-001", "锁定接骨板 locking bone plate", "B", None, "块", Decimal("12000.00")),
    ("C-TRO-001", "一次性穿刺器 disposable trocar set", "C", None, "套", None),
]
CATALOGUE_FILES = ("catalogue-2026.csv", "catalogue-2026.xlsx")
_CSV_CATEGORY = {"A": "甲类", "B": "乙类", "C": "丙类"}


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


def _percent(share: Decimal) -> str:
    return f"{(share * 100).normalize():f}%"


def write_catalogue_samples(folder: pathlib.Path) -> list[pathlib.Path]:
    """The sample catalogue as an insurer's CSV export and as a workbook with number cells."""
    csv_path, xlsx_path = (folder / name for name in CATALOGUE_FILES)
    write_table(
        csv_path,
        CATALOGUE_HEADER,
        [
            (code, name, _CSV_CATEGORY[category], _percent(share) if share else None, unit, cap)
            for code, name, category, share, unit, cap in CATALOGUE
        ],
    )
    write_table(xlsx_path, CATALOGUE_HEADER, CATALOGUE, sheet_name="目录")
    return [csv_path, xlsx_path]


if __name__ == "__main__":
    folder = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    for path in [*write_samples(folder), *write_catalogue_samples(folder)]:
        print(path)
