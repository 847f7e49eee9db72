"""Word lists and sentence templates of CREATE-sample's annotations (used by ``synthetic.text``).

Part of the sample's definition: changing them changes the data, so bump ``SAMPLE_VERSION`` in
``sample.py``.
"""

from __future__ import annotations

# --------------------------------------------------------------------------------------------
# Templates. Slots: {obj} object name, {mw} measure word, {num} count word, {colour} colour
# name, {np} noun phrase with count+colour+object, {scene} locative (厨房里), {place} scene noun
# (厨房), {motion} caption verb phrase, {speed} adverb (may be empty), {pron} 它/它们, {total}
# how many there are (只有一个 / 一共有两个), {cat}
# category name, {act} title verb phrase, {adj} an adjective.
# --------------------------------------------------------------------------------------------

CAPTION_TEMPLATES: tuple[str, ...] = (
    "{scene}，{np}{speed}{motion}",
    "画面中{np}在{scene}{speed}{motion}",
    "一个人在{scene}拍摄{np}，{pron}{speed}{motion}",
    "镜头对着{place}，{np}{speed}{motion}",
    "视频里{np}{speed}{motion}，背景是{place}",
    "在{scene}可以看到{np}{speed}{motion}",
    "{np}出现在{scene}，然后{speed}{motion}",
    "{place}的画面中，{colour}的{obj}{speed}{motion}",
    "有人把{np}放在{scene}，{pron}{speed}{motion}",
    "固定镜头拍摄{place}，{np}{speed}{motion}",
    "{np}在{place}的背景前{speed}{motion}",
    "视频展示了{np}在{scene}{motion}的过程",
    "这段视频拍的是{scene}的{np}，{pron}{speed}{motion}",
    "一个人在{scene}摆弄{np}，{obj}{speed}{motion}",
    "{scene}放着{np}，{pron}{speed}{motion}",
    "画面里是{place}，中间有{np}{speed}{motion}",
    "{colour}的{obj}在{scene}{speed}{motion}，画面里{total}",
    "从视频中可以看到，{np}在{scene}{speed}{motion}",
    "{np}{speed}{motion}，画面背景是{place}",
    "这是一段在{scene}拍摄的视频，{np}{speed}{motion}",
    "近景拍摄{np}，{pron}在{scene}{speed}{motion}",
    "{scene}有{np}，{pron}正在{motion}",
    "画面展示{place}，{np}{motion}",
    "镜头前，{np}在{scene}{speed}{motion}",
    "在{place}的背景下，{np}{speed}{motion}",
    "有人在{scene}放了{np}，视频记录了{pron}{motion}的样子",
    "{np}在画面中{speed}{motion}，场景是{place}",
    "简单的{place}场景里，{np}{speed}{motion}",
    "{scene}，一个人看着{np}{speed}{motion}",
    "画面主体是{np}，{pron}{speed}{motion}，背景为{place}",
    "整段视频中，{np}一直在{scene}{motion}",
    "{np}被放在{scene}，随后{speed}{motion}",
    "视频拍摄了{scene}的情景：{np}{speed}{motion}",
    "{scene}的{np}{speed}{motion}",
    "一个人把镜头对准{scene}的{np}，只见{pron}{speed}{motion}",
    "背景是{place}，画面里的{colour}{obj}{speed}{motion}",
    "{np}，在{scene}{speed}{motion}",
    "视频开始时{np}出现在{scene}，接着{pron}{speed}{motion}",
)

TITLE_TEMPLATES: tuple[str, ...] = (
    "{obj}为什么会{act}？看完你就懂了",
    "{colour}的{obj}竟然{act}了！太神奇了",
    "第一次见{obj}{act}，全程笑不停",
    "99%的人都不知道，{obj}还能这样玩",
    "你见过会{act}的{obj}吗？",
    "一定要看到最后！{obj}{act}的那一刻绝了",
    "【{cat}】{colour}{obj}{act}，太治愈了",
    "{place}里的{obj}成精了？",
    "{obj}先{act}还是先停下？答案出乎意料",
    "原来{obj}也会{act}，长见识了",
    "{num}{mw}{obj}{act}，这画面太美",
    "谁懂啊！{colour}{obj}居然{act}",
    "{cat}达人教你：让{obj}{act}的小技巧",
    "看{obj}{act}，解压又上头",
    "{obj}：我要{act}了，谁也别拦我",
    "这个{obj}有点东西，{act}的样子太{adj}了",
    "当{obj}开始{act}，我惊呆了",
    "{colour}{obj}大挑战，你能跟上它的节奏吗？",
    "关于{obj}的冷知识，{act}只是开始",
    "今天的{cat}日常：{obj}{act}",
    "家人们，{obj}{act}是什么操作？",
    "{obj}{act}的全过程，一镜到底",
    "一分钟看懂{obj}为什么{act}",
    "{colour}{obj}遇上{place}，谁更出片？",
    "挑战让{obj}{act}，结果……",
    "{obj}界的天花板，{act}也太丝滑了",
    "如果{obj}会{act}，你会怎么办？",
    "没想到{obj}还能{act}，涨知识了",
    "{cat}｜{colour}{obj}{act}，建议收藏",
    "{obj}{act}？这操作我服了",
    "这么{adj}的{obj}，你见过吗？",
    "别眨眼！{obj}马上要{act}了",
    "我家{obj}又{act}了，真拿它没办法",
    "{place}惊现{colour}{obj}，网友：太离谱",
    "一{mw}{obj}引发的{cat}名场面",
    "{obj}{act}的秘密，终于被我发现了",
    "跟着{obj}一起{act}，快乐加倍",
    "{colour}{obj}，今日份的快乐源泉",
    "万万没想到，{obj}居然会{act}",
    "{obj}怎么{act}？三秒教会你",
    "超{adj}！{num}{mw}{colour}{obj}在{place}{act}",
    "听说{obj}{act}的视频很火，我也来试试",
    "{cat}爱好者必看：{obj}{act}合集",
    "看完这个{obj}，我沉默了",
    "{obj}到底能不能{act}？实测告诉你",
    "今天教大家让{obj}{act}，简单又好玩",
    "{obj}{act}的样子，像极了周一的我",
    "{cat}新玩法：{colour}{obj}原地{act}",
    "为了拍{obj}{act}，我蹲了一整天",
    "{obj}这波{act}，我给满分",
)

ADJECTIVES = ("可爱", "神奇", "好看", "特别", "魔性", "治愈", "有趣", "上头")

RAW_BASES: tuple[str, ...] = (
    "{obj}{act}了",
    "我家的{obj}",
    "{colour}{obj}",
    "{cat}日常",
    "今天的{obj}",
    "拍个{obj}",
    "{obj}{obj}{obj}",
    "{place}随手拍",
    "{obj}合集",
    "{cat}｜{obj}",
    "一{mw}{obj}",
    "{obj}太{adj}了吧",
    "{obj} {act}",
    "第{k}期 {obj}",
    "{place}的{obj}",
    "{cat}分享 {obj}{act}",
)
UNRELATED: tuple[str, ...] = (
    "今天天气真好",
    "周末愉快",
    "随手拍",
    "好久没更新了",
    "求关注",
    "无聊拍着玩",
    "新人报道",
    "记录一下",
    "晚安",
    "早上好呀",
    "又是元气满满的一天",
    "emo了",
    "来了来了",
    "1",
    "。。。",
    "作品{k}",
    "第{k}天打卡",
    "#上热门",
)
EMOJIS = ("😂", "🔥", "👍", "❤️", "😍", "🤣", "✨", "🎉", "💪", "🥰", "😭", "👀", "🌟", "🙏", "💯", "😎")
HANDLES = ("抖音小助手", "DOU+小助手", "创作者小助手", "热门小助手")
NICK_PARTS = tuple("小阿大老甜月星鱼可乐木子安一糖雨风熊")
RAW_SUFFIXES = ("求关注", "点个赞吧", "记得点赞", "关注我看更多", "喜欢就关注吧", "哈哈哈哈", "嘿嘿")

SHARED_TAGS = ("日常", "记录生活", "推荐", "热门", "上热门", "vlog", "原创", "分享", "有趣", "创意", "抖音")
RARE_TAGS = (
    "小众宝藏", "冷门", "意想不到", "脑洞大开", "沉浸式", "解压视频", "慢生活", "随手拍", "手机摄影",
    "周末", "夏天", "冬天", "治愈系", "氛围感", "一镜到底", "定格动画", "特效", "剪辑教程", "延时摄影",
    "仪式感", "打工人", "学生党", "宝藏博主", "魔性", "画面感", "科普一下", "小技巧", "合集", "第一视角",
)  # fmt: skip
