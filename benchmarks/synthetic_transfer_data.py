"""Data for benchmarks/synthetic_transfer_torch.py: synthetic NIH + hospital sets, written by the real
writers and read back by the real readers (data.image_conversion.convert_image), stored as one .npz of 64-px arrays.

Usage: python benchmarks/synthetic_transfer_data.py N_NIH N_HOSPITAL OUT.npz   (the figures: 3000 300)
"""
import sys, numpy as np, pandas as pd, time
from pathlib import Path
from data.synthetic import write_hospital, write_nih
from data.synthetic.prevalence import HOSPITAL_CATEGORIES
from data.image_conversion import convert_image
from data.nih import read_labels, FINDINGS
root = Path('/tmp/synthcheck'); import shutil; shutil.rmtree(root, ignore_errors=True)
n_nih, n_hosp, size = int(sys.argv[1]), int(sys.argv[2]), 64
t = time.time()
write_nih(root / 'nih', n_images=n_nih, seed=1, image_size=128, prevalence='study')
out = {}
table = read_labels(root / 'nih' / 'Data_Entry_2017.csv')
out['nih_x'] = np.stack([convert_image(root / 'nih' / 'images' / name, image_size=size) for name in table['image']])
out['nih_y'] = table[list(FINDINGS)].to_numpy().astype(np.uint8)
sub2cat = {s: c for c, (_, shares) in HOSPITAL_CATEGORIES.items() for s in shares}
cats = list(HOSPITAL_CATEGORIES)
for prevalence in ('balanced', 'study'):
    h = root / f'hosp_{prevalence}'
    summary = write_hospital(h, n_images=n_hosp, seed=2, image_size=128, prevalence=prevalence, n_duplicates=0, outliers=False)
    labels = pd.read_csv(h / 'labels.csv')
    out[f'{prevalence}_x'] = np.stack([convert_image(h / p, image_size=size) for p in labels['image']])
    y = np.zeros((len(labels), len(cats)), np.uint8)
    for i, text in enumerate(labels['labels']):
        for s in text.split('|'):
            if s != 'normal': y[i, cats.index(sub2cat[s])] = 1
    out[f'{prevalence}_y'] = y
    out[f'{prevalence}_patient'] = pd.factorize(labels['patient_id'])[0]
np.savez_compressed(sys.argv[3], **out)
print({k: v.shape for k, v in out.items()}, 'positives', {p: out[f'{p}_y'].sum(0).tolist() for p in ('balanced','study')}, f'{time.time()-t:.0f}s')
