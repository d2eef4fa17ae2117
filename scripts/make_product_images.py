"""Draw the demo catalog's product pictures, the favicon and the pay mark.

Flat illustrations from plain shapes (no fonts, so no CJK font is needed).
Run once from the repository root; the PNGs it writes are committed:

    python scripts/make_product_images.py
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
PRODUCTS_DIR = ROOT / "static" / "img" / "products"
IMG_DIR = ROOT / "static" / "img"

SIZE = 480  # final edge, in pixels
SCALE = 2  # draw at twice the size, then downsample: cheap anti-aliasing
S = SIZE * SCALE
MAX_BYTES = 60 * 1024

Point = tuple[float, float]


# ---------------------------------------------------------------- helpers


def ellipse_points(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, n: int = 72) -> list[Point]:
    """Polygon approximating an ellipse rotated by ``angle`` degrees."""
    a = math.radians(angle)
    pts = []
    for i in range(n):
        t = 2 * math.pi * i / n
        x, y = rx * math.cos(t), ry * math.sin(t)
        pts.append((cx + x * math.cos(a) - y * math.sin(a), cy + x * math.sin(a) + y * math.cos(a)))
    return pts


def leaf_points(cx: float, cy: float, length: float, width: float, angle: float, n: int = 24) -> list[Point]:
    """A pointed leaf (two arcs meeting at the tips), centred on (cx, cy)."""
    a = math.radians(angle)
    half = length / 2
    pts = []
    for i in range(n + 1):  # upper edge, tip to tip
        t = -1 + 2 * i / n
        pts.append((t * half, -width / 2 * (1 - t * t)))
    for i in range(n + 1):  # lower edge, back
        t = 1 - 2 * i / n
        pts.append((t * half, width / 2 * (1 - t * t)))
    return [(cx + x * math.cos(a) - y * math.sin(a), cy + x * math.sin(a) + y * math.cos(a)) for x, y in pts]


def rotate(pt: Point, cx: float, cy: float, angle: float) -> Point:
    a = math.radians(angle)
    x, y = pt[0] - cx, pt[1] - cy
    return (cx + x * math.cos(a) - y * math.sin(a), cy + x * math.sin(a) + y * math.cos(a))


def canvas(bg: str, blob: str) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A square with a soft background colour and a lighter disc behind the subject."""
    img = Image.new("RGB", (S, S), bg)
    d = ImageDraw.Draw(img)
    d.ellipse((S * 0.12, S * 0.10, S * 0.88, S * 0.86), fill=blob)
    return img, d


def shadow(d: ImageDraw.ImageDraw, cx: float, y: float, rx: float, colour: str) -> None:
    d.ellipse((cx - rx, y - rx * 0.12, cx + rx, y + rx * 0.12), fill=colour)


def bean(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, angle: float, fill: str, crease: str) -> None:
    d.polygon(ellipse_points(cx, cy, r, r * 0.68, angle), fill=fill)
    # The crease: a gentle S along the long axis.
    pts = []
    for i in range(13):
        t = -0.75 + 1.5 * i / 12
        pts.append(rotate((cx + t * r, cy + math.sin(t * math.pi) * r * 0.12), cx, cy, angle))
    d.line(pts, fill=crease, width=max(3, int(r * 0.13)), joint="curve")


def save(img: Image.Image, path: Path, size: int, colors: int = 96) -> None:
    """Downsample, quantize and write an optimized PNG."""
    small = img.resize((size, size), Image.Resampling.LANCZOS)
    if small.mode == "RGBA":
        out = small.quantize(colors, method=Image.Quantize.FASTOCTREE)
    else:
        out = small.quantize(colors, method=Image.Quantize.MEDIANCUT)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path, optimize=True)
    nbytes = path.stat().st_size
    if nbytes > MAX_BYTES:
        raise SystemExit(f"{path.name} is {nbytes} bytes, over {MAX_BYTES}")
    print(f"{path.relative_to(ROOT)}  {nbytes // 1024} KB")


def u(v: float) -> float:
    """A length given on a 480 grid, in drawing pixels."""
    return v * SCALE


# ---------------------------------------------------------------- products


def coffee_beans() -> Image.Image:
    img, d = canvas("#F4EBE1", "#EBDCCB")
    shadow(d, u(240), u(398), u(150), "#DCC8B2")
    # The bag: slightly tapered kraft paper with a folded, crimped top.
    body = [(u(150), u(150)), (u(330), u(150)), (u(345), u(395)), (u(135), u(395))]
    d.polygon(body, fill="#B98557")
    d.polygon([(u(150), u(150)), (u(190), u(150)), (u(178), u(395)), (u(135), u(395))], fill="#A9744A")
    d.rectangle((u(146), u(112), u(334), u(158)), fill="#8E5E3A")
    for x in range(146, 334, 12):  # crimp marks on the seal
        d.line((u(x + 6), u(118), u(x + 6), u(152)), fill="#7A4F30", width=u(3))
    # Label with a bean on it.
    d.rounded_rectangle((u(180), u(215), u(300), u(335)), radius=u(14), fill="#FBF4E8")
    d.rounded_rectangle((u(180), u(215), u(300), u(335)), radius=u(14), outline="#E2CDB2", width=u(3))
    bean(d, u(240), u(262), u(30), -30, "#5B3A24", "#F1DFC8")
    d.rounded_rectangle((u(200), u(304), u(280), u(314)), radius=u(5), fill="#C9A27C")
    # Loose beans in front.
    for cx, cy, r, a in [(112, 372, 22, 20), (150, 404, 20, -35), (338, 400, 21, 50),
                         (374, 370, 23, -10), (300, 418, 18, 75), (190, 424, 17, 5)]:
        bean(d, u(cx), u(cy), u(r), a, "#5B3A24", "#8C6245")
    return img


def longjing_tea() -> Image.Image:
    img, d = canvas("#E8F3EA", "#D5EBD9")
    shadow(d, u(230), u(400), u(140), "#C3DEC9")
    # Cylinder tin: body, bottom curve, lid.
    left, right, top, bottom = u(150), u(310), u(150), u(390)
    rx, ry = (right - left) / 2, u(20)
    cx = (left + right) / 2
    d.ellipse((left, bottom - ry, right, bottom + ry), fill="#2F7A4B")
    d.rectangle((left, top, right, bottom), fill="#3C9460")
    d.rectangle((left, top, left + u(30), bottom), fill="#348754")
    d.rectangle((right - u(22), top, right, bottom), fill="#4AA56F")
    # Paper label band with a leaf.
    d.rectangle((left, u(215), right, u(330)), fill="#F6F1E1")
    d.ellipse((left, u(330) - ry, right, u(330) + ry), fill="#F6F1E1")
    d.ellipse((cx - u(40), u(232), cx + u(40), u(312)), fill="#E4EFD9")
    d.polygon(leaf_points(cx, u(272), u(70), u(32), -40), fill="#3C9460")
    d.line((rotate((cx - u(30), u(272)), cx, u(272), -40), rotate((cx + u(30), u(272)), cx, u(272), -40)),
           fill="#E4EFD9", width=u(3))
    # Lid.
    d.rectangle((left - u(6), u(118), right + u(6), u(165)), fill="#24643C")
    d.ellipse((left - u(6), u(165) - ry, right + u(6), u(165) + ry), fill="#24643C")
    d.ellipse((left - u(6), u(118) - ry, right + u(6), u(118) + ry), fill="#2F7A4B")
    d.ellipse((cx - rx * 0.7, u(118) - ry * 0.55, cx + rx * 0.7, u(118) + ry * 0.55), fill="#3C9460")
    # Fresh leaves beside the tin.
    for lx, ly, ln, w, a, c in [(352, 330, 86, 34, -60, "#5DBB63"), (385, 372, 80, 30, -20, "#48A553"),
                                (330, 392, 70, 28, 15, "#7ACC6E"), (112, 388, 70, 28, -150, "#5DBB63")]:
        d.polygon(leaf_points(u(lx), u(ly), u(ln), u(w), a), fill=c)
        p1 = rotate((u(lx) - u(ln) * 0.4, u(ly)), u(lx), u(ly), a)
        p2 = rotate((u(lx) + u(ln) * 0.4, u(ly)), u(lx), u(ly), a)
        d.line((p1, p2), fill="#3A8A44", width=u(2))
    return img


def porcelain_cup() -> Image.Image:
    img, d = canvas("#EAF0F8", "#D9E4F3")
    blue, white = "#2A5CAA", "#FFFFFF"
    # Saucer.
    d.ellipse((u(100), u(338), u(380), u(408)), fill="#C6D4EA")
    d.ellipse((u(100), u(330), u(380), u(396)), fill=white)
    d.ellipse((u(120), u(342), u(360), u(388)), outline=blue, width=u(3))
    # Cup body: wide rim, rounded bottom, on a foot ring.
    top, rim_l, rim_r = u(170), u(120), u(360)
    pts = [(rim_l, top)]
    for i in range(31):
        t = i / 30  # rim -> bottom along a quarter-ish curve
        pts.append((rim_l + u(60) * t ** 1.6, top + u(165) * math.sin(t * math.pi / 2)))
    pts += [(rim_r - u(60) * t ** 1.6, top + u(165) * math.sin(t * math.pi / 2))
            for t in (i / 30 for i in range(30, -1, -1))]
    d.polygon(pts, fill=white)
    d.rounded_rectangle((u(192), u(328), u(288), u(352)), radius=u(6), fill="#EEF2F8")
    d.line((u(194), u(340), u(286), u(340)), fill=blue, width=u(3))
    # Inside of the rim, and the tea.
    d.ellipse((rim_l, top - u(24), rim_r, top + u(24)), fill="#F1F5FB")
    d.ellipse((rim_l + u(16), top - u(15), rim_r - u(16), top + u(17)), fill="#C9B26A")
    d.ellipse((rim_l, top - u(24), rim_r, top + u(24)), outline=blue, width=u(4))
    # Blue-and-white pattern: a double band, a flower and leafy sprays.
    d.arc((u(126), u(160), u(354), u(222)), 10, 170, fill=blue, width=u(5))
    d.arc((u(136), u(170), u(344), u(226)), 15, 165, fill=blue, width=u(2))
    fx, fy = u(240), u(262)
    for k in range(6):
        a = math.radians(k * 60)
        px, py = fx + u(20) * math.cos(a), fy + u(20) * math.sin(a)
        d.ellipse((px - u(11), py - u(11), px + u(11), py + u(11)), fill="#5B86C8")
    d.ellipse((fx - u(10), fy - u(10), fx + u(10), fy + u(10)), fill=blue)
    for lx, ly, a in [(192, 252, -20), (196, 280, 25), (288, 252, 200), (284, 280, 155)]:
        d.polygon(leaf_points(u(lx), u(ly), u(34), u(14), a), fill=blue)
    for k in range(7):  # a row of small waves above the foot
        x0 = 178 + k * 18
        d.arc((u(x0), u(306), u(x0 + 18), u(322)), 180, 360, fill="#5B86C8", width=u(3))
    # Steam.
    for sx in (205, 250):
        d.arc((u(sx - 12), u(90), u(sx + 12), u(118)), 90, 270, fill="#AFC3E3", width=u(5))
        d.arc((u(sx - 12), u(116), u(sx + 12), u(144)), 270, 450, fill="#AFC3E3", width=u(5))
    return img


def bamboo_basket() -> Image.Image:
    img, d = canvas("#F7F0DF", "#EFE3C6")
    shadow(d, u(240), u(392), u(160), "#E2D3B1")
    # Handles first, so the body covers their roots.
    d.arc((u(88), u(180), u(170), u(290)), 90, 270, fill="#B98B4E", width=u(12))
    d.arc((u(310), u(180), u(392), u(290)), 270, 450, fill="#B98B4E", width=u(12))
    body = [(u(104), u(190)), (u(376), u(190)), (u(346), u(385)), (u(134), u(385))]
    # Weave: a checkerboard of two straw tones, clipped to the body by a mask.
    weave = Image.new("RGB", (S, S), "#D9B271")
    wd = ImageDraw.Draw(weave)
    cell = u(24)
    for row, y in enumerate(range(int(u(180)), int(u(400)), int(cell))):
        for col, x in enumerate(range(int(u(90)), int(u(390)), int(cell))):
            if (row + col) % 2:
                wd.rectangle((x, y, x + cell - 1, y + cell - 1), fill="#C49753")
            else:
                wd.rectangle((x + u(3), y + u(3), x + cell - u(4), y + cell - u(4)), fill="#E6C589")
    mask = Image.new("L", (S, S), 0)
    ImageDraw.Draw(mask).polygon(body, fill=255)
    img.paste(weave, (0, 0), mask)
    d = ImageDraw.Draw(img)
    # Rim and base band.
    d.rounded_rectangle((u(92), u(170), u(388), u(204)), radius=u(16), fill="#A97A3F")
    d.rounded_rectangle((u(100), u(176), u(380), u(188)), radius=u(6), fill="#C79A5B")
    d.rounded_rectangle((u(128), u(372), u(352), u(392)), radius=u(10), fill="#A97A3F")
    return img


def silk_bookmark() -> Image.Image:
    img, d = canvas("#F9ECEF", "#F3DCE2")
    red, gold = "#C8323F", "#E3A93B"
    # Cord from the hole up to a knot, then the tassel hanging to the right.
    d.line((u(240), u(96), u(240), u(60)), fill=red, width=u(5))
    d.line([(u(240), u(60)), (u(275), u(70)), (u(305), u(100)), (u(318), u(150))], fill=red, width=u(5),
           joint="curve")
    d.ellipse((u(306), u(140), u(332), u(166)), fill=red)
    d.rounded_rectangle((u(310), u(160), u(328), u(176)), radius=u(4), fill=gold)
    tassel = [(u(312), u(174)), (u(326), u(174)), (u(350), u(268)), (u(288), u(268))]
    d.polygon(tassel, fill=red)
    for x in range(292, 350, 9):
        d.line((u(319), u(180), u(x), u(266)), fill="#A8232F", width=u(2))
    # The bookmark: cream silk with a thin gold frame.
    d.rounded_rectangle((u(176), u(84), u(304), u(420)), radius=u(14), fill="#D8B9A8")  # shadow side
    d.rounded_rectangle((u(170), u(80), u(298), u(414)), radius=u(14), fill="#FFF8F1")
    d.rounded_rectangle((u(182), u(92), u(286), u(402)), radius=u(8), outline=gold, width=u(3))
    d.ellipse((u(228), u(98), u(252), u(122)), fill="#F3DCE2")
    d.ellipse((u(233), u(103), u(247), u(117)), fill="#D8B9A8")
    # Embroidered flower on a stem.
    d.line([(u(234), u(380)), (u(238), u(330)), (u(234), u(280)), (u(234), u(250))], fill="#4E9A5A",
           width=u(5), joint="curve")
    d.polygon(leaf_points(u(256), u(330), u(52), u(22), -30), fill="#6DB56F")
    d.polygon(leaf_points(u(214), u(300), u(48), u(20), 30), fill="#4E9A5A")
    fx, fy = u(234), u(216)
    for k in range(5):
        a = math.radians(k * 72 - 90)
        px, py = fx + u(22) * math.cos(a), fy + u(22) * math.sin(a)
        d.ellipse((px - u(18), py - u(18), px + u(18), py + u(18)), fill="#F08BA0")
    for k in range(5):
        a = math.radians(k * 72 - 54)
        px, py = fx + u(14) * math.cos(a), fy + u(14) * math.sin(a)
        d.ellipse((px - u(8), py - u(8), px + u(8), py + u(8)), fill="#F6B3C0")
    d.ellipse((fx - u(10), fy - u(10), fx + u(10), fy + u(10)), fill=gold)
    return img


def zisha_teapot() -> Image.Image:
    img, d = canvas("#F5EAE2", "#EDD9CB")
    clay, dark, light = "#8A4A30", "#6E3824", "#A55F41"
    shadow(d, u(236), u(378), u(150), "#E0C8B8")
    # Handle: a thick ring on the right.
    d.ellipse((u(300), u(200), u(400), u(320)), fill=clay)
    d.ellipse((u(324), u(224), u(376), u(296)), fill="#EDD9CB")
    # Spout: a tapered curve to the upper left.
    spout = [(u(150), u(260)), (u(118), u(232)), (u(92), u(196)), (u(78), u(182)), (u(98), u(172)),
             (u(122), u(198)), (u(160), u(228))]
    d.polygon(spout, fill=clay)
    d.ellipse((u(74), u(170), u(102), u(186)), fill=dark)
    # Body: a squat round pot.
    d.ellipse((u(128), u(192), u(344), u(372)), fill=clay)
    d.chord((u(128), u(192), u(344), u(372)), 20, 160, fill=dark)
    d.ellipse((u(160), u(216), u(230), u(262)), fill=light)
    # Lid and knob.
    d.ellipse((u(176), u(176), u(296), u(212)), fill=dark)
    d.ellipse((u(186), u(166), u(286), u(200)), fill=clay)
    d.ellipse((u(222), u(140), u(250), u(174)), fill=dark)
    d.ellipse((u(228), u(144), u(240), u(156)), fill=light)
    # Two tea cups of the same clay.
    for cx in (90, 392):
        d.polygon([(u(cx - 26), u(352)), (u(cx + 26), u(352)), (u(cx + 18), u(388)), (u(cx - 18), u(388))],
                  fill=clay)
        d.ellipse((u(cx - 26), u(344), u(cx + 26), u(360)), fill=dark)
    return img


def canvas_tote() -> Image.Image:
    img, d = canvas("#EEF1E7", "#DFE6D3")
    cloth, seam, green = "#F1E8D3", "#D8CBAE", "#07A356"
    shadow(d, u(240), u(412), u(140), "#D0D8C2")
    # Handles: the back one peeks out behind the front one.
    d.arc((u(186), u(60), u(318), u(260)), 180, 360, fill="#C9BA98", width=u(14))
    d.arc((u(166), u(70), u(298), u(270)), 180, 360, fill="#D9CCAF", width=u(14))
    # Bag body.
    d.rectangle((u(118), u(160), u(362), u(404)), fill=cloth)
    d.rectangle((u(118), u(160), u(362), u(186)), fill="#E6DBC2")
    d.line((u(118), u(186), u(362), u(186)), fill=seam, width=u(2))
    d.polygon([(u(330), u(160)), (u(362), u(160)), (u(362), u(404)), (u(340), u(404))], fill="#E6DBC2")
    for cx in (173, 291):  # handle roots stitched on
        d.rectangle((u(cx - 9), u(156), u(cx + 9), u(200)), fill="#D9CCAF")
        d.rectangle((u(cx - 9), u(190), u(cx + 9), u(196)), fill=seam)
    # Print: sun over green hills.
    d.ellipse((u(258), u(226), u(306), u(274)), fill="#F2B33D")
    d.polygon([(u(150), u(350)), (u(214), u(256)), (u(268), u(330)), (u(300), u(290)), (u(336), u(350))],
              fill=green)
    d.polygon([(u(194), u(286)), (u(214), u(256)), (u(234), u(286)), (u(222), u(280)), (u(214), u(290)),
               (u(206), u(280))], fill="#FFFFFF")
    d.rectangle((u(150), u(350), u(336), u(360)), fill="#0B7A43")
    return img


def wuchang_rice() -> Image.Image:
    img, d = canvas("#F6F1E3", "#E6D7B4")
    sack, sack_dark = "#FCF8EE", "#E9DBB8"
    shadow(d, u(240), u(406), u(160), "#E0D2AF")
    # Sack: wide rounded body, a neck gathered by a tie, a ruffled top.
    d.rounded_rectangle((u(118), u(176), u(362), u(404)), radius=u(64), fill=sack)
    d.polygon([(u(138), u(214)), (u(342), u(214)), (u(282), u(146)), (u(198), u(146))], fill=sack)
    top = [(u(204), u(140)), (u(276), u(140)), (u(328), u(92))]
    for k in range(8):  # a ruffled edge from right to left
        x = 328 - k * 24
        top += [(u(x - 12), u(102)), (u(x - 24), u(90))]
    top += [(u(152), u(92))]
    d.polygon(top, fill=sack_dark)
    for x in (180, 210, 240, 270, 300):  # gathered folds
        d.line((u(x), u(100), u(240 + (x - 240) * 0.4), u(138)), fill="#C7B187", width=u(3))
    d.line((u(190), u(196), u(214), u(150)), fill=sack_dark, width=u(3))
    d.line((u(290), u(196), u(266), u(150)), fill=sack_dark, width=u(3))
    d.rounded_rectangle((u(194), u(134), u(286), u(152)), radius=u(9), fill="#B5413A")  # the tie
    d.line([(u(282), u(144)), (u(306), u(166)), (u(300), u(186))], fill="#B5413A", width=u(5))
    # Label: a gold rice stalk on red.
    d.rounded_rectangle((u(168), u(220), u(312), u(360)), radius=u(18), fill="#B5413A")
    d.rounded_rectangle((u(178), u(230), u(302), u(350)), radius=u(12), outline="#E8B94A", width=u(3))
    stalk = [(u(212), u(336)), (u(232), u(300)), (u(246), u(270)), (u(262), u(246))]
    d.line(stalk, fill="#E8B94A", width=u(4), joint="curve")
    for i, (gx, gy) in enumerate([(236, 298), (244, 282), (252, 266), (260, 252), (266, 240)]):
        for side in (-1, 1):
            d.polygon(ellipse_points(u(gx + side * 10), u(gy + 2), u(10), u(5), -60 + side * 35), fill="#F2C95A")
    d.polygon(ellipse_points(u(268), u(236), u(10), u(5), -60), fill="#F2C95A")
    # Loose grains in front.
    for gx, gy, a in [(96, 392, 20), (120, 410, -30), (360, 414, 45), (384, 394, -10), (410, 410, 70),
                      (80, 414, 80), (340, 398, 0)]:
        d.polygon(ellipse_points(u(gx), u(gy), u(9), u(5), a), fill="#FFFDF6")
        d.polygon(ellipse_points(u(gx), u(gy), u(9), u(5), a), outline="#D9CFB6", width=u(1))
    return img


PRODUCTS = {
    "coffee-beans": coffee_beans,
    "longjing-tea": longjing_tea,
    "porcelain-cup": porcelain_cup,
    "bamboo-basket": bamboo_basket,
    "silk-bookmark": silk_bookmark,
    "zisha-teapot": zisha_teapot,
    "canvas-tote": canvas_tote,
    "wuchang-rice": wuchang_rice,
}


# ---------------------------------------------------------------- site marks


def favicon() -> Image.Image:
    """A green shopping bag on a transparent square, drawn at 256 px."""
    n = 256
    img = Image.new("RGBA", (n, n), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.arc((78, 20, 178, 130), 180, 360, fill="#067D40", width=20)
    d.rounded_rectangle((28, 76, 228, 244), radius=30, fill="#07C160")
    d.ellipse((72, 100, 96, 124), fill="#FFFFFF")
    d.ellipse((160, 100, 184, 124), fill="#FFFFFF")
    d.arc((84, 100, 172, 180), 20, 160, fill="#FFFFFF", width=14)
    return img.resize((32, 32), Image.Resampling.LANCZOS)


def wechatpay_mark() -> Image.Image:
    """A green disc with a white tick: our own pay mark, not WeChat's logo."""
    n = 256
    img = Image.new("RGBA", (n, n), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.ellipse((4, 4, 252, 252), fill="#07C160")
    d.line([(70, 132), (112, 174), (190, 92)], fill="#FFFFFF", width=26, joint="curve")
    for x, y in ((70, 132), (190, 92)):  # round the stroke ends
        d.ellipse((x - 13, y - 13, x + 13, y + 13), fill="#FFFFFF")
    return img.resize((64, 64), Image.Resampling.LANCZOS)


def save_rgba(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, optimize=True)
    print(f"{path.relative_to(ROOT)}  {path.stat().st_size} B")


def main() -> None:
    for sku, draw in PRODUCTS.items():
        save(draw(), PRODUCTS_DIR / f"{sku}.png", SIZE)
    save_rgba(favicon(), IMG_DIR / "favicon.png")
    save_rgba(wechatpay_mark(), IMG_DIR / "wechatpay-mark.png")


if __name__ == "__main__":
    main()
