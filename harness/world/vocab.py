"""The tiny world's vocabulary: what a scene can contain and the words for it in six languages.

Everything the generator can draw or say lives here, so the captions, the renderer and the
zero-shot class names stay consistent.
"""

from __future__ import annotations

SHAPES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "hexagon",
    "diamond", "cross", "heart", "crescent", "arrow",
)
PLURAL = {s: s + "s" for s in SHAPES} | {"cross": "crosses"}

# Saturated fill colours; each sample jitters its RGB a little around these.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "orange": (245, 135, 20),
    "yellow": (240, 215, 30),
    "green": (40, 160, 50),
    "blue": (35, 75, 215),
    "purple": (135, 50, 185),
    "pink": (245, 120, 185),
    "brown": (125, 78, 35),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)

SIZES: tuple[str, ...] = ("small", "large")
COUNTS: tuple[int, ...] = (1, 2, 3, 4)
COUNT_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}

# Each position names the 64x64 quarter (or the centre box) of the 128 px canvas the objects sit in.
POSITIONS: dict[str, tuple[int, int]] = {  # box origin (x0, y0); boxes are 64x64
    "top left": (0, 0),
    "top right": (64, 0),
    "bottom left": (0, 64),
    "bottom right": (64, 64),
    "center": (32, 32),
}
POSITION_NAMES: tuple[str, ...] = tuple(POSITIONS)
POSITION_PHRASES = {
    "top left": "in the top left", "top right": "in the top right",
    "bottom left": "in the bottom left", "bottom right": "in the bottom right",
    "center": "in the center",
}

# Backgrounds seen in the pool and training data.
TEXTURES: tuple[str, ...] = ("plain", "striped", "dotted", "checkered", "noisy", "gradient")
# Backgrounds that appear only in the "new backgrounds" distribution shift.
SHIFT_TEXTURES: tuple[str, ...] = ("waves", "grid", "scribbles", "rings")

GENERIC_CAPTIONS: tuple[str, ...] = (
    "a shape", "an image of something", "a picture of a shape", "some shapes", "a simple drawing",
    "an object", "a geometric figure", "shapes on a background", "a graphic", "an illustration",
)

# Alt-text that says nothing about the picture (file names are filled in with numbers).
UNDERSPECIFIED_CAPTIONS: tuple[str, ...] = (
    "image", "photo", "picture", "untitled", "IMG_{n4}.jpg", "DSC{n5}.JPG", "image{n2}.png",
    "thumbnail", "click to enlarge", "view image", "untitled-{n2}", "stock photo", "download",
    "img", "screenshot {n4}", "file {n3}",
)

LANGUAGES: tuple[str, ...] = ("es", "fr", "de", "ja", "zh")

# --- translations ------------------------------------------------------------------------------
# Spanish: shape -> (gender, singular, plural)
ES_SHAPES = {
    "circle": ("m", "círculo", "círculos"), "square": ("m", "cuadrado", "cuadrados"),
    "triangle": ("m", "triángulo", "triángulos"), "star": ("f", "estrella", "estrellas"),
    "hexagon": ("m", "hexágono", "hexágonos"), "diamond": ("m", "rombo", "rombos"),
    "cross": ("f", "cruz", "cruces"), "heart": ("m", "corazón", "corazones"),
    "crescent": ("f", "media luna", "medias lunas"), "arrow": ("f", "flecha", "flechas"),
}
# colour -> (m sg, f sg, m pl, f pl)
ES_COLOURS = {
    "red": ("rojo", "roja", "rojos", "rojas"), "orange": ("naranja", "naranja", "naranjas", "naranjas"),
    "yellow": ("amarillo", "amarilla", "amarillos", "amarillas"),
    "green": ("verde", "verde", "verdes", "verdes"), "blue": ("azul", "azul", "azules", "azules"),
    "purple": ("morado", "morada", "morados", "moradas"), "pink": ("rosa", "rosa", "rosas", "rosas"),
    "brown": ("marrón", "marrón", "marrones", "marrones"),
}
ES_SIZES = {"small": ("pequeño", "pequeña", "pequeños", "pequeñas"),
            "large": ("grande", "grande", "grandes", "grandes")}
ES_COUNTS = {2: "dos", 3: "tres", 4: "cuatro"}
ES_POSITIONS = {"top left": "arriba a la izquierda", "top right": "arriba a la derecha",
                "bottom left": "abajo a la izquierda", "bottom right": "abajo a la derecha",
                "center": "en el centro"}
ES_TEXTURES = {"plain": "liso", "striped": "a rayas", "dotted": "de puntos", "checkered": "a cuadros",
               "noisy": "con ruido", "gradient": "degradado"}

FR_SHAPES = {
    "circle": ("m", "cercle", "cercles"), "square": ("m", "carré", "carrés"),
    "triangle": ("m", "triangle", "triangles"), "star": ("f", "étoile", "étoiles"),
    "hexagon": ("m", "hexagone", "hexagones"), "diamond": ("m", "losange", "losanges"),
    "cross": ("f", "croix", "croix"), "heart": ("m", "cœur", "cœurs"),
    "crescent": ("m", "croissant", "croissants"), "arrow": ("f", "flèche", "flèches"),
}
FR_COLOURS = {
    "red": ("rouge", "rouge", "rouges", "rouges"), "orange": ("orange", "orange", "orange", "orange"),
    "yellow": ("jaune", "jaune", "jaunes", "jaunes"), "green": ("vert", "verte", "verts", "vertes"),
    "blue": ("bleu", "bleue", "bleus", "bleues"), "purple": ("violet", "violette", "violets", "violettes"),
    "pink": ("rose", "rose", "roses", "roses"), "brown": ("marron", "marron", "marron", "marron"),
}
FR_SIZES = {"small": ("petit", "petite", "petits", "petites"), "large": ("grand", "grande", "grands", "grandes")}
FR_COUNTS = {2: "deux", 3: "trois", 4: "quatre"}
FR_POSITIONS = {"top left": "en haut à gauche", "top right": "en haut à droite",
                "bottom left": "en bas à gauche", "bottom right": "en bas à droite", "center": "au centre"}
FR_TEXTURES = {"plain": "uni", "striped": "rayé", "dotted": "à pois", "checkered": "à carreaux",
               "noisy": "bruité", "gradient": "dégradé"}

# German: shape -> (gender m/n/f, singular, plural)
DE_SHAPES = {
    "circle": ("m", "Kreis", "Kreise"), "square": ("n", "Quadrat", "Quadrate"),
    "triangle": ("n", "Dreieck", "Dreiecke"), "star": ("m", "Stern", "Sterne"),
    "hexagon": ("n", "Sechseck", "Sechsecke"), "diamond": ("f", "Raute", "Rauten"),
    "cross": ("n", "Kreuz", "Kreuze"), "heart": ("n", "Herz", "Herzen"),
    "crescent": ("m", "Halbmond", "Halbmonde"), "arrow": ("m", "Pfeil", "Pfeile"),
}
DE_COLOURS = {"red": "rot", "orange": "orangefarben", "yellow": "gelb", "green": "grün", "blue": "blau",
              "purple": "violett", "pink": "rosafarben", "brown": "braun"}
DE_SIZES = {"small": "klein", "large": "groß"}
DE_COUNTS = {2: "zwei", 3: "drei", 4: "vier"}
DE_POSITIONS = {"top left": "oben links", "top right": "oben rechts", "bottom left": "unten links",
                "bottom right": "unten rechts", "center": "in der Mitte"}
DE_TEXTURES = {"plain": "auf einem einfarbigen Hintergrund", "striped": "auf einem gestreiften Hintergrund",
               "dotted": "auf einem gepunkteten Hintergrund", "checkered": "auf einem karierten Hintergrund",
               "noisy": "auf einem verrauschten Hintergrund", "gradient": "auf einem Hintergrund mit Farbverlauf"}

JA_SHAPES = {"circle": "円", "square": "四角形", "triangle": "三角形", "star": "星", "hexagon": "六角形",
             "diamond": "ひし形", "cross": "十字", "heart": "ハート", "crescent": "三日月", "arrow": "矢印"}
JA_COLOURS = {"red": "赤い", "orange": "オレンジ色の", "yellow": "黄色い", "green": "緑の", "blue": "青い",
              "purple": "紫の", "pink": "ピンクの", "brown": "茶色の"}
JA_SIZES = {"small": "小さな", "large": "大きな"}
JA_COUNTS = {1: "一つの", 2: "二つの", 3: "三つの", 4: "四つの"}
JA_POSITIONS = {"top left": "左上", "top right": "右上", "bottom left": "左下", "bottom right": "右下",
                "center": "中央"}
JA_TEXTURES = {"plain": "無地の背景", "striped": "縞模様の背景", "dotted": "水玉模様の背景",
               "checkered": "市松模様の背景", "noisy": "ざらざらした背景", "gradient": "グラデーションの背景"}

ZH_SHAPES = {"circle": "圆形", "square": "正方形", "triangle": "三角形", "star": "星形", "hexagon": "六边形",
             "diamond": "菱形", "cross": "十字形", "heart": "心形", "crescent": "月牙形", "arrow": "箭头"}
ZH_COLOURS = {"red": "红色", "orange": "橙色", "yellow": "黄色", "green": "绿色", "blue": "蓝色",
              "purple": "紫色", "pink": "粉色", "brown": "棕色"}
ZH_SIZES = {"small": "小", "large": "大"}
ZH_COUNTS = {1: "一个", 2: "两个", 3: "三个", 4: "四个"}
ZH_POSITIONS = {"top left": "左上角", "top right": "右上角", "bottom left": "左下角", "bottom right": "右下角",
                "center": "中间"}
ZH_TEXTURES = {"plain": "纯色背景", "striped": "条纹背景", "dotted": "圆点背景", "checkered": "棋盘格背景",
               "noisy": "噪点背景", "gradient": "渐变背景"}
