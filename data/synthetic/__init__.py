"""Synthetic chest radiographs in the layouts users bring: a hospital DICOM folder or NIH ChestX-ray14.

`folders` writes the two layouts (the entry points below), with findings drawn as `prevalence` says.
`render` draws a chest from the soft `shapes`; `findings`, `findings_nih` and `findings_study` paint
findings on it, `effects` makes one fainter for one sex, and `dicom` wraps an image in a DICOM file with
a made-up patient. Nothing here is needed to use real data.
"""
from data.synthetic.folders import hospital_label_texts, write_hospital, write_nih

__all__ = ["hospital_label_texts", "write_hospital", "write_nih"]
