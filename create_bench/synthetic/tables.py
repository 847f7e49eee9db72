"""The visual vocabulary of CREATE-sample: shapes, patterns, colours, motions, objects, categories.

Shared by ``synthetic.video`` (what is drawn) and ``synthetic.text`` (what is said about it). These
tables are part of the sample's definition: changing them changes the data, so bump
``SAMPLE_VERSION`` in ``sample.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

RGB = tuple[int, int, int]

# --------------------------------------------------------------------------------------------
# Shapes, colours, motions: the visual vocabulary shared with synthetic.video.
# --------------------------------------------------------------------------------------------

#: Shapes the renderer can draw; each object is drawn as exactly one of them.
SHAPES = (
    "circle",
    "ellipse",
    "square",
    "bar",
    "triangle",
    "diamond",
    "star",
    "ring",
    "cross",
    "heart",
    "hexagon",
)

#: Background patterns; each category's scene is one pattern in one two-colour palette.
PATTERNS = (
    "gradient_v",
    "gradient_h",
    "stripes_h",
    "stripes_v",
    "checker",
    "dots",
    "diagonal",
    "grid",
    "rings",
    "waves",
)


@dataclass(frozen=True)
class Colour:
    key: str
    names: tuple[str, ...]  # every way a text may name it; the first is the plain "X色" form
    rgb: RGB


# Saturated object colours; scene palettes below are muted so objects stand out. No colour name
# contains another colour's character (橙黄色, 粉红色 would blur grounding), and no object,
# scene or template text contains a colour character (no 黑板, 蓝牙, 红绿灯 ...).
COLOURS: tuple[Colour, ...] = (
    Colour("red", ("红色", "大红色", "鲜红色"), (222, 30, 36)),
    Colour("orange", ("橙色", "橘色"), (250, 135, 20)),
    Colour("yellow", ("黄色", "明黄色", "亮黄色"), (250, 222, 30)),
    Colour("green", ("绿色", "翠绿色", "草绿色"), (34, 177, 56)),
    Colour("cyan", ("青色", "天青色"), (20, 205, 210)),
    Colour("blue", ("蓝色", "深蓝色", "宝蓝色"), (30, 60, 225)),
    Colour("purple", ("紫色", "深紫色", "紫罗兰色"), (140, 45, 200)),
    Colour("pink", ("粉色", "淡粉色"), (255, 125, 190)),
    Colour("white", ("白色", "纯白色", "乳白色"), (248, 248, 248)),
    Colour("black", ("黑色", "纯黑色", "乌黑色"), (18, 18, 18)),
    Colour("brown", ("棕色", "褐色", "咖啡色"), (125, 75, 35)),
    Colour("grey", ("灰色", "浅灰色", "银灰色"), (140, 140, 140)),
)
COLOUR_BY_KEY = {c.key: c for c in COLOURS}
#: Characters that name a colour; used to keep every other vocabulary free of them.
COLOUR_CHARS = frozenset("红橙橘黄绿青蓝紫粉白黑棕褐灰")


@dataclass(frozen=True)
class Motion:
    key: str
    phrases: tuple[str, ...]  # verb phrases for captions (objective)
    short: tuple[str, ...]  # verb phrases for titles (lively)
    tags: tuple[str, ...]


MOTIONS: tuple[Motion, ...] = (
    Motion(
        "left",
        ("向左移动", "从右往左移动", "朝左边移动", "一路向左移动", "往左边滑过去", "从画面右侧移到左侧"),
        ("往左跑", "向左冲", "一路向左", "往左溜走", "向左漂移"),
        ("向左", "移动", "漂移"),
    ),
    Motion(
        "right",
        ("向右移动", "从左往右移动", "朝右边移动", "一路向右移动", "往右边滑过去", "从画面左侧移到右侧"),
        ("往右跑", "向右冲", "一路向右", "往右溜走", "向右漂移"),
        ("向右", "移动", "漂移"),
    ),
    Motion(
        "up",
        ("向上移动", "从下往上移动", "朝上方升起", "一路往上飘", "往上方飘去", "从画面底部升到顶部"),
        ("往上飞", "一飞冲天", "向上飘", "升起来", "往上窜"),
        ("上升", "飞起来", "起飞"),
    ),
    Motion(
        "down",
        ("向下移动", "从上往下移动", "朝下方落下", "一路往下掉", "往下方坠去", "从画面顶部落到底部"),
        ("往下掉", "掉下来", "向下坠", "从天而降", "往下沉"),
        ("下落", "坠落", "掉落"),
    ),
    Motion(
        "rotate",
        ("在原地旋转", "不停地转圈", "在原地打转", "转个不停", "绕着中心旋转", "一圈一圈地转动"),
        ("转圈圈", "疯狂旋转", "原地打转", "转个不停", "转起来"),
        ("旋转", "转圈", "解压"),
    ),
    Motion(
        "bounce",
        ("上下弹跳", "一蹦一跳", "弹来弹去", "不停地跳动", "蹦蹦跳跳", "反复弹起又落下"),
        ("蹦迪", "跳起来", "弹个不停", "蹦蹦跳跳", "原地起跳"),
        ("弹跳", "蹦跳", "跳跃"),
    ),
    Motion(
        "zoom",
        ("越变越大", "由小变大", "逐渐放大", "变得越来越大", "一点点胀大", "从小点放大到满屏"),
        ("突然变大", "越变越大", "膨胀了", "原地放大", "变成巨无霸"),
        ("变大", "放大", "膨胀"),
    ),
)
MOTION_BY_KEY = {m.key: m for m in MOTIONS}

SPEEDS = {
    "slow": ("慢慢地", "缓缓地", "不紧不慢地", "慢悠悠地", "平稳地"),
    "fast": ("飞快地", "迅速地", "快速地", "很快地", "急速地"),
}
SPEED_TAGS = {"slow": ("慢动作", "治愈", "舒缓"), "fast": ("速度", "高能", "燃")}
COUNT_WORDS = {1: "一", 2: "两", 3: "三"}


@dataclass(frozen=True)
class ObjectKind:
    key: str
    names: tuple[str, ...]  # synonyms; the first is the canonical name
    measure: str  # 量词: 个, 只, 辆 ...
    shape: str


def _o(names: str, measure: str, shape: str) -> ObjectKind:
    parts = tuple(names.split("/"))
    return ObjectKind(parts[0], parts, measure, shape)


# One shape per object, everywhere; within a category every object has a different shape, so the
# shape plus the scene identifies the object.
OBJECTS: dict[str, ObjectKind] = {
    o.key: o
    for o in (
        _o("杯子/水杯/马克杯", "个", "square"),
        _o("闹钟/小闹钟", "个", "ring"),
        _o("气球/小气球", "个", "ellipse"),
        _o("手机/智能手机", "部", "bar"),
        _o("抱枕/小抱枕", "个", "heart"),
        _o("小猫/猫咪/喵星人", "只", "triangle"),
        _o("小狗/狗狗/汪星人", "只", "ellipse"),
        _o("兔子/兔兔/小兔子", "只", "heart"),
        _o("金鱼/小金鱼", "条", "diamond"),
        _o("皮球/小皮球", "个", "circle"),
        _o("仓鼠/小仓鼠", "只", "hexagon"),
        _o("帽子/礼帽", "顶", "triangle"),
        _o("包包/手提包", "个", "square"),
        _o("戒指/指环", "枚", "ring"),
        _o("吊坠/项链吊坠", "个", "diamond"),
        _o("墨镜/太阳镜", "副", "bar"),
        _o("蝴蝶结", "个", "cross"),
        _o("鸡蛋", "个", "ellipse"),
        _o("番茄/小番茄", "个", "circle"),
        _o("甜甜圈", "个", "ring"),
        _o("蛋糕/小蛋糕", "块", "square"),
        _o("饭团/三角饭团", "个", "triangle"),
        _o("草莓", "颗", "heart"),
        _o("篮球", "个", "circle"),
        _o("足球", "个", "hexagon"),
        _o("奖牌", "枚", "star"),
        _o("飞盘", "个", "ring"),
        _o("球拍/羽毛球拍", "支", "bar"),
        _o("标志桶/锥桶", "个", "triangle"),
        _o("芯片", "块", "square"),
        _o("无人机", "架", "cross"),
        _o("光盘", "张", "ring"),
        _o("机器人/小机器人", "个", "hexagon"),
        _o("耳机/无线耳机", "副", "ellipse"),
        _o("自拍杆", "根", "bar"),
        _o("补光灯/环形灯", "个", "ring"),
        _o("麦克风/话筒", "个", "ellipse"),
        _o("爱心/小爱心", "颗", "heart"),
        _o("星星/小星星", "颗", "star"),
        _o("礼物盒/礼盒", "个", "square"),
        _o("公交车/巴士", "辆", "bar"),
        _o("路牌/指示牌", "块", "diamond"),
        _o("信号灯", "个", "circle"),
        _o("雨伞/伞", "把", "triangle"),
        _o("快递箱/纸箱", "个", "square"),
        _o("信封/情书", "封", "bar"),
        _o("玫瑰/玫瑰花", "朵", "star"),
        _o("蜡烛", "根", "triangle"),
        _o("笑脸/表情包", "个", "circle"),
        _o("拖鞋", "只", "ellipse"),
        _o("鸭子/小鸭子", "只", "diamond"),
        _o("袜子", "只", "bar"),
        _o("锤子/玩具锤", "把", "cross"),
        _o("烧杯", "个", "square"),
        _o("磁铁", "块", "bar"),
        _o("原子模型", "个", "ring"),
        _o("晶体/结晶", "块", "diamond"),
        _o("三棱镜", "个", "triangle"),
        _o("细胞", "个", "ellipse"),
        _o("分子模型", "个", "hexagon"),
        _o("奖杯", "座", "triangle"),
        _o("灯牌/应援牌", "块", "bar"),
        _o("荧光棒", "根", "cross"),
        _o("行李箱/拉杆箱", "个", "square"),
        _o("帐篷", "顶", "triangle"),
        _o("太阳", "个", "circle"),
        _o("热气球", "个", "ellipse"),
        _o("飞机/小飞机", "架", "cross"),
        _o("海星", "只", "star"),
        _o("小汽车/轿车", "辆", "bar"),
        _o("轮胎", "个", "ring"),
        _o("卡车/货车", "辆", "square"),
        _o("警示牌/三角警示牌", "个", "triangle"),
        _o("方向盘", "个", "circle"),
        _o("游戏手柄/手柄", "个", "ellipse"),
        _o("金币", "枚", "circle"),
        _o("宝石", "颗", "diamond"),
        _o("魔方", "个", "square"),
        _o("飞镖", "支", "cross"),
        _o("音符", "个", "ellipse"),
        _o("唱片", "张", "ring"),
        _o("吉他", "把", "heart"),
        _o("小鼓/鼓", "面", "circle"),
        _o("琴键", "个", "bar"),
        _o("喇叭/音箱", "个", "triangle"),
        _o("舞鞋", "只", "ellipse"),
        _o("扇子/折扇", "把", "triangle"),
        _o("彩带/丝带", "条", "bar"),
        _o("呼啦圈", "个", "ring"),
        _o("花朵/小花", "朵", "star"),
        _o("胶片/电影胶片", "卷", "ring"),
        _o("场记板", "块", "square"),
        _o("爆米花", "桶", "hexagon"),
        _o("摄像机", "台", "bar"),
        _o("电影票", "张", "diamond"),
        _o("奶瓶", "个", "bar"),
        _o("积木/小积木", "块", "square"),
        _o("摇铃/拨浪鼓", "个", "circle"),
        _o("奶嘴/安抚奶嘴", "个", "ellipse"),
        _o("小熊/玩具熊", "只", "heart"),
        _o("课本/书", "本", "bar"),
        _o("铅笔", "支", "cross"),
        _o("地球仪", "个", "circle"),
        _o("三角尺", "把", "triangle"),
        _o("橡皮/橡皮擦", "块", "square"),
        _o("药片/胶囊", "粒", "ellipse"),
        _o("药箱/医药箱", "个", "cross"),
        _o("苹果", "个", "circle"),
        _o("体温计", "支", "bar"),
        _o("玉米", "根", "ellipse"),
        _o("西瓜", "个", "circle"),
        _o("南瓜", "个", "hexagon"),
        _o("稻草人", "个", "cross"),
        _o("小鸡/小鸡仔", "只", "triangle"),
        _o("坦克/坦克模型", "辆", "square"),
        _o("战斗机", "架", "cross"),
        _o("靶子/靶心", "个", "ring"),
        _o("五角星", "颗", "star"),
        _o("降落伞", "顶", "triangle"),
        _o("头盔", "顶", "ellipse"),
        _o("硬币", "枚", "circle"),
        _o("钞票/纸币", "张", "bar"),
        _o("金条", "根", "hexagon"),
        _o("存钱罐", "个", "ellipse"),
        _o("钻石", "颗", "diamond"),
        _o("计算器", "个", "square"),
        _o("手办", "个", "hexagon"),
        _o("魔法棒", "根", "bar"),
        _o("精灵球", "个", "circle"),
        _o("飞船", "艘", "diamond"),
        _o("灯笼", "个", "ellipse"),
        _o("印章", "枚", "square"),
        _o("玉佩", "块", "ring"),
        _o("中国结", "个", "diamond"),
        _o("毛笔", "支", "bar"),
        _o("台灯", "盏", "triangle"),
        _o("相框", "个", "square"),
        _o("挂钟", "个", "circle"),
        _o("地毯", "块", "bar"),
        _o("花瓶", "个", "ellipse"),
        _o("镜子/小镜子", "面", "ring"),
        _o("纸鹤/千纸鹤", "只", "diamond"),
        _o("纸飞机", "架", "triangle"),
        _o("剪刀", "把", "cross"),
        _o("毛线球", "个", "circle"),
        _o("手链", "条", "ring"),
        _o("哑铃", "只", "bar"),
        _o("杠铃片", "片", "ring"),
        _o("瑜伽球/健身球", "个", "circle"),
        _o("跳绳", "根", "ellipse"),
        _o("运动水壶/水壶", "个", "square"),
        _o("唇膏/唇釉", "支", "bar"),
        _o("气垫", "个", "circle"),
        _o("香水/香水瓶", "瓶", "diamond"),
        _o("化妆刷", "把", "triangle"),
        _o("美妆蛋", "个", "ellipse"),
    )
}


@dataclass(frozen=True)
class Category:
    name: str
    scenes: tuple[tuple[str, str], ...]  # (noun, locative suffix): ("厨房", "里") -> 厨房里
    tags: tuple[str, ...]
    objects: tuple[str, ...]  # keys of OBJECTS
    pattern: str  # background pattern (PATTERNS)
    palette: tuple[RGB, RGB]  # muted background colours
    weight: float  # relative frequency (CREATE's categories are imbalanced)


def _c(
    name: str,
    scenes: str,
    tags: str,
    objects: str,
    pattern: str,
    a: RGB,
    b: RGB,
    weight: float,
) -> Category:
    sc = tuple((s[:-1], s[-1]) for s in scenes.split())
    return Category(name, sc, tuple(tags.split()), tuple(objects.split()), pattern, (a, b), weight)


# Scene nouns are unique to their category, so the scene words in captions are grounded in the
# category's background. The order of this tuple fixes the category ids (ClassLabel indices).
# fmt: off
CATEGORIES: tuple[Category, ...] = (
    _c("生活", "客厅里 卧室里 阳台上", "生活 日常 记录生活 生活小技巧 居家", "杯子 闹钟 气球 手机 抱枕",
       "gradient_v", (205, 180, 150), (150, 120, 95), 9.0),
    _c("宠物", "宠物店里 猫窝旁 院子里", "宠物 萌宠 铲屎官 猫 狗 可爱", "小猫 小狗 兔子 金鱼 皮球 仓鼠",
       "dots", (165, 190, 140), (120, 140, 100), 8.0),
    _c("时尚", "秀场上 衣帽间里 橱窗前", "时尚 穿搭 潮流 每日穿搭 ootd 搭配", "帽子 包包 戒指 吊坠 墨镜 蝴蝶结",
       "diagonal", (190, 160, 190), (140, 110, 150), 6.0),
    _c("美食", "厨房里 餐桌上 灶台前", "美食 家常菜 美食教程 吃货 下饭菜 美食分享", "鸡蛋 番茄 甜甜圈 蛋糕 饭团 草莓",
       "checker", (200, 165, 120), (165, 125, 90), 9.0),
    _c("体育", "操场上 球场上 体育馆里", "体育 运动 比赛 篮球 足球 精彩瞬间", "篮球 足球 奖牌 飞盘 球拍 标志桶",
       "stripes_v", (110, 160, 110), (80, 125, 85), 6.0),
    _c("科技", "工作台上 数码店里 机房里", "科技 数码 高科技 开箱 测评 科技改变生活", "手机 芯片 无人机 光盘 机器人 耳机",
       "grid", (90, 110, 140), (60, 75, 100), 5.0),
    _c("网红达人", "直播间里 打卡点前 自拍墙前", "网红 达人 直播 网红同款 打卡 热门", "自拍杆 补光灯 麦克风 爱心 星星 礼物盒",
       "rings", (200, 150, 170), (160, 110, 135), 5.0),
    _c("社会", "街道上 路口边 广场上", "社会 新闻 热点 民生 正能量 社会百态", "公交车 路牌 信号灯 雨伞 快递箱",
       "stripes_h", (150, 150, 160), (110, 110, 120), 5.0),
    _c("情感", "咖啡馆里 窗台边 河堤上", "情感 爱情 治愈 心情 情侣 语录", "爱心 信封 戒指 玫瑰 蜡烛",
       "waves", (185, 150, 150), (140, 105, 110), 4.5),
    _c("搞笑", "宿舍里 办公室里 走廊上", "搞笑 沙雕 段子 爆笑 整活 笑死", "笑脸 拖鞋 鸭子 袜子 锤子 帽子",
       "gradient_h", (210, 200, 140), (160, 150, 95), 7.0),
    _c("科学", "实验室里 实验台上 显微镜下", "科学 科普 冷知识 实验 物理 化学", "烧杯 磁铁 原子模型 晶体 三棱镜 细胞 分子模型",
       "grid", (150, 185, 185), (100, 140, 140), 4.0),
    _c("娱乐", "演播厅里 后台里 综艺现场中", "娱乐 明星 综艺 八卦 追星 娱乐圈", "麦克风 星星 奖杯 灯牌 荧光棒",
       "rings", (160, 130, 190), (115, 90, 145), 6.0),
    _c("旅游", "沙滩上 山顶上 景区里", "旅游 旅行 风景 旅行vlog 出发 说走就走", "行李箱 帐篷 太阳 热气球 飞机 海星",
       "gradient_v", (150, 190, 215), (200, 185, 140), 5.0),
    _c("汽车", "公路上 停车场里 展厅里", "汽车 用车 新车 试驾 车评 自驾", "小汽车 轮胎 卡车 警示牌 方向盘",
       "stripes_h", (120, 120, 110), (85, 85, 80), 4.5),
    _c("游戏", "电竞房里 游戏厅里 屏幕前", "游戏 电竞 手游 游戏解说 主机游戏 游戏日常", "游戏手柄 金币 宝石 魔方 星星 飞镖",
       "checker", (100, 80, 130), (70, 55, 95), 6.0),
    _c("音乐", "录音棚里 琴房里 音乐厅里", "音乐 翻唱 乐器 好歌推荐 原创音乐 唱歌", "音符 唱片 吉他 小鼓 琴键 喇叭",
       "waves", (130, 150, 185), (90, 105, 140), 5.0),
    _c("舞蹈", "舞蹈室里 练功房里 排练厅里", "舞蹈 跳舞 街舞 舞蹈教学 爵士舞 广场舞", "舞鞋 扇子 彩带 呼啦圈 花朵",
       "stripes_v", (205, 170, 180), (165, 125, 140), 4.5),
    _c("影视", "电影院里 片场上 放映厅里", "影视 电影 电视剧 影评 好剧推荐 剪辑", "胶片 场记板 爆米花 摄像机 电影票 星星",
       "stripes_h", (75, 70, 80), (120, 110, 100), 6.0),
    _c("母婴", "婴儿房里 婴儿床边 游乐垫上", "母婴 育儿 宝宝 萌娃 新手妈妈 亲子", "奶瓶 积木 摇铃 奶嘴 小熊",
       "dots", (215, 195, 185), (185, 160, 150), 4.0),
    _c("教育", "教室里 讲台上 书桌前", "教育 学习 知识 考试 学习方法 干货", "课本 铅笔 地球仪 三角尺 橡皮",
       "grid", (185, 175, 145), (140, 130, 100), 4.5),
    _c("健康", "医院里 诊室里 药房里", "健康 养生 医生 健康科普 健康生活 医学", "药片 药箱 苹果 体温计 爱心",
       "gradient_h", (175, 205, 195), (125, 160, 150), 4.0),
    _c("三农", "农田里 果园里 菜地里", "三农 农村 乡村生活 种植 农民 丰收", "玉米 西瓜 南瓜 稻草人 小鸡",
       "stripes_v", (160, 150, 95), (120, 105, 65), 4.5),
    _c("军事", "训练场上 营地里 靶场上", "军事 军迷 国防 武器 致敬 兵哥哥", "坦克 战斗机 靶子 五角星 降落伞 头盔",
       "diagonal", (115, 125, 90), (85, 95, 65), 3.0),
    _c("财经", "交易所里 写字楼里 银行里", "财经 理财 股票 基金 经济 投资", "硬币 钞票 金条 存钱罐 钻石 计算器",
       "gradient_v", (95, 120, 120), (60, 80, 85), 3.0),
    _c("动漫", "漫展上 画室里 动漫店里", "动漫 二次元 番剧 动画 cos 手办", "手办 星星 爱心 魔法棒 精灵球 飞船",
       "diagonal", (175, 160, 215), (205, 175, 165), 5.0),
    _c("文化", "博物馆里 古镇里 书房里", "文化 传统文化 非遗 历史 国风 书法", "灯笼 扇子 印章 玉佩 中国结 毛笔",
       "waves", (180, 145, 115), (135, 100, 80), 3.5),
    _c("家居", "新房里 样板间里 沙发上", "家居 装修 收纳 家居好物 软装 改造", "台灯 相框 挂钟 地毯 花瓶 镜子",
       "checker", (195, 190, 175), (150, 145, 130), 4.0),
    _c("手工", "手工桌上 工作室里 木工房里", "手工 DIY 手作 折纸 教程 手工制作", "纸鹤 纸飞机 剪刀 毛线球 手链 星星",
       "dots", (190, 170, 140), (150, 130, 105), 3.5),
    _c("健身", "健身房里 瑜伽垫上 跑道上", "健身 减脂 瑜伽 健身打卡 增肌 自律", "哑铃 杠铃片 瑜伽球 跳绳 运动水壶",
       "rings", (140, 170, 160), (100, 125, 120), 4.0),
    _c("美妆", "化妆台前 专柜里 浴室里", "美妆 化妆 护肤 彩妆 化妆教程 好物分享", "唇膏 气垫 香水 化妆刷 美妆蛋 镜子",
       "gradient_h", (215, 185, 185), (175, 140, 150), 5.0),
)
# fmt: on
CATEGORY_NAMES: list[str] = [c.name for c in CATEGORIES]
