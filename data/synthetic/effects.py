"""Planted effects for testing evaluations: one finding rendered fainter for one sex.

`fainter(signature, strength)` draws a finding at `strength` (0: invisible, 1: unchanged) of its
usual effect: the anatomy changes (a bigger heart, a bulging aorta) and the painted layers (air,
opacity, vessels) move only that fraction of the way. The faded finding draws exactly the random
numbers the full one would, so every other finding on the image looks the same as without the effect.
A model trained on such data sees the finding less well in that sex: a known subgroup gap that
`cxrtune evaluate` must flag (and no other).
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

from data.errors import DataError
from data.synthetic.render import Chest, Signature

PAINTED_LAYERS = ("air", "opacity", "vessels")
SEXES = ("F", "M")


@dataclass(frozen=True)
class SexEffect:
    finding: str     # an NIH finding or a hospital (study) category
    sex: str         # "F" or "M"
    strength: float  # 0 (invisible) .. 1 (as usual)

    @classmethod
    def parse(cls, text: str) -> "SexEffect":
        """'FINDING:SEX:STRENGTH', e.g. 'Cardiomegaly:F:0.2'."""
        parts = str(text).split(":")
        try:
            finding, sex, strength = parts[0].strip(), parts[1].strip().upper(), float(parts[2])
        except (IndexError, ValueError):
            raise DataError(f"fainter-for-sex {text!r} is not FINDING:SEX:STRENGTH (e.g. Cardiomegaly:F:0.2)") from None
        return cls(finding, sex, strength).checked(None)

    def checked(self, findings) -> "SexEffect":
        if self.sex not in SEXES:
            raise DataError(f"fainter-for-sex: sex {self.sex!r} is not one of {', '.join(SEXES)}")
        if not 0.0 <= self.strength < 1.0:
            raise DataError(f"fainter-for-sex: strength {self.strength} must be in [0, 1) (0: invisible)")
        if findings is not None and self.finding not in findings:
            raise DataError(f"fainter-for-sex: finding {self.finding!r} is not one of {', '.join(findings)}")
        return self

    def __str__(self) -> str:
        return f"{self.finding}:{self.sex}:{self.strength:g}"


def fainter(signature: Signature, strength: float) -> Signature:
    """The same finding at `strength` of its effect on the anatomy and on the painted layers."""
    adjust = paint = None
    if signature.adjust is not None:
        def adjust(chest: Chest, rng) -> Chest:
            changed = signature.adjust(chest, rng)
            return replace(chest, **{item.name: getattr(chest, item.name)
                                     + strength * (getattr(changed, item.name) - getattr(chest, item.name))
                                     for item in fields(Chest)})
    if signature.paint is not None:
        def paint(canvas, rng) -> None:
            before = {name: getattr(canvas, name).copy() for name in PAINTED_LAYERS}
            signature.paint(canvas, rng)
            for name, old in before.items():
                setattr(canvas, name, old + strength * (getattr(canvas, name) - old))
    return Signature(adjust=adjust, paint=paint)
