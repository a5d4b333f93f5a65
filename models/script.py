"""Both scripts: what a member types, compared the same whether written in Simplified or Traditional Chinese.

`fold(text)` is the form every keyword, hashtag, sub-argument and unit is compared in: NFKC (full-width digits,
letters, "＃" and punctuation become ASCII; "①" becomes "1"), Traditional characters mapped to Simplified, case
folded and trimmed. Both sides of a comparison are folded, so "簽到", "签到" and "签到 " are one keyword, a
group's own keyword "打咭" matches however it is typed, and "#曬單" is the showcase hashtag "#晒单".

The map covers the characters of the bot's own vocabulary (keywords, units, sub-arguments, day and tier names)
and the common words of shopping groups and their spam; it is one-way (Traditional → Simplified), so a
Simplified character is never changed and a character both scripts share is left as it is. It is for
comparing only: what a person typed is stored and shown as typed.
"""

from __future__ import annotations

import unicodedata

__all__ = ["TO_SIMPLIFIED", "fold", "simplified"]

# Pairs "TS": a Traditional character and its Simplified form (several Traditional forms may share one).
_PAIRS = """
簽签 籤签 積积 兌兑 換换 團团 糰团 購购 選选 殺杀 時时 獎奖 奬奖 優优 曬晒 單单 曆历 歷历 補补 關关 閉闭
開开 無无 鐘钟 鍾钟 個个 箇个 總总 週周 話话 題题 簡简 體体 點点 號号 碼码 設设 語语 間间 後后 發发 髮发
貨货 讚赞 贊赞 紅红 買买 賣卖 價价 錢钱 塊块 專专 業业 務务 職职 廣广 賭赌 貸贷 頻频 滿满 減减 評评 論论
寶宝 貝贝 鏈链 網网 約约 會会 員员 認认 證证 級级 銀银 鑽钻 確确 結结 庫库 數数 狀状 態态 規规 則则 勵励
連连 續续 記记 錄录 録录 領领 現现 實实 際际 項项 門门 檻槛 額额 幣币 臺台 檯台 颱台 灣湾 馬马 來来 亞亚
國国 東东 車车 電电 費费 條条 氣气 們们 這这 麼么 嗎吗 為为 爲为 對对 還还 與与 從从 讓让 給给 說说 説说
見见 長长 問问 場场 陽阳 陰阴 戶户 帳账 賬账 擇择 動动 處处 識识 學学 習习 書书 麵面 麪面 鹽盐 鮮鲜 雞鸡
魚鱼 蝦虾 飯饭 飲饮 餅饼 葉叶 藥药 裝装 衛卫 衞卫 護护 膚肤 潤润 濕湿 溼湿 霧雾 華华 麗丽 顏颜 紙纸 線线
綫线 絲丝 綠绿 藍蓝 黃黄 純纯 淨净 凈净 潔洁 熱热 涼凉 燈灯 機机 鏡镜 錶表 鐵铁 銅铜 鋁铝 鍋锅 壺壶 盤盘
雙双 隻只 張张 顆颗 組组 輛辆 幾几 兩两 億亿 萬万 閒闲 閑闲 頭头 腦脑 腳脚 臉脸 愛爱 歡欢 樂乐 謝谢 請请
讀读 寫写 聽听 貼贴 轉转 傳传 訊讯 視视 頁页 圖图 標标 獲获 贏赢 輸输 勝胜 敗败 參参 報报 訂订 運运 郵邮
遞递 倉仓 儲储 搶抢 預预 準准 備备 檢检 驗验 餘余 禮礼 贈赠 賠赔 償偿 虧亏 賺赚 銷销 廠厂 營营 當当 舊旧
樣样 試试 質质 種种 類类 別别 區区 縣县 鄉乡 鎮镇 內内 陸陆 蘇苏 滬沪 黨党 軍军 舉举 槍枪 彈弹 騙骗 詐诈
盜盗 竊窃 偽伪 僞伪 辦办 聯联 繫系 係系 絡络 諮咨 詢询 閱阅 啟启 啓启 鎖锁 靜静 錯错 誤误 過过 沒没 經经
審审 絕绝 導导 幫帮 節节 剩剩 贏赢 盡尽 儘尽 彩彩 獨独 權权 觀观 覺觉 親亲 鬆松 緊紧 複复 復复 製制 範范
裡里 裏里 衝冲 鬥斗 醜丑 穀谷 蔔卜 慶庆 紀纪 念念 憶忆 齊齐 齡龄 歲岁 壽寿 婦妇 媽妈 爺爷 孫孙 兒儿 寵宠
貓猫 豬猪 飛飞 龍龙 鳳凤 鳥鸟 蘋苹 葡葡 萄萄 莊庄 園园 圓圆 樓楼 層层 廳厅 廚厨 櫃柜 牆墙 窗窗 燒烧 烤烤
湯汤 鍵键 盤盘 螢萤 幕幕 訊讯 聲声 響响 筆笔 畫画 劃划 覽览 館馆 邊边 遠远 達达 進进 運运 遊游 戲戏 玩玩
顯显 示示 鬧闹 鈴铃 計计 劃划 帶带 餐餐 廳厅 牌牌 貴贵 賤贱 便便 宜宜 漲涨 跌跌 貿贸 易易 險险 資资 財财
產产 務务 稅税 貢贡 獻献 勞劳 動动 薪薪 資资 傭佣 歸归 還还 贖赎 換换 兩两 夠够 實实 驚惊 喜喜 熱热 賽赛
瘋疯 狂狂 狀状 況况 戰战 勢势 師师 將将 帥帅 課课 講讲 試试 題题 測测 驗验 鑑鉴 鑒鉴 別别 虛虚 擬拟 幣币
達达 標标 準准 則则 優优 質质 評评 選选 薦荐 議议 論论 談谈 諾诺 誠诚 誰谁 讀读 誌志 雜杂 據据 憑凭 隨随
氣气 溫温 濃浓 淡淡 鹹咸 甜甜 辣辣 淺浅 舊旧 換换 貳贰 捌捌 玖玖 拾拾 圓圆 塊块 毛毛 錢钱 價价
鵝鹅 編编 穩稳 撥拨 輕轻 註注 冊册
"""
_T2S = {pair[0]: pair[1] for pair in _PAIRS.split() if pair[0] != pair[1]}
# One character for one, so str.translate does it in one pass in C (models/detection.py folds every message with it).
TO_SIMPLIFIED = str.maketrans(_T2S)


def simplified(text: str) -> str:
    """`text` with the mapped Traditional characters written in Simplified (for comparing, never for showing)."""
    return text.translate(TO_SIMPLIFIED)


def fold(text: str) -> str:
    """The form keywords, hashtags, sub-arguments and units are compared in: NFKC, Simplified, case folded,
    trimmed. Fold both sides of a comparison (a literal written in Simplified folds to itself)."""
    return simplified(unicodedata.normalize("NFKC", text)).casefold().strip()
