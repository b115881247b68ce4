"""Does pretraining on the synthetic NIH set help on the synthetic hospital set? (PyTorch, run on a GPU)

ResNet18 from random init at 64 px: pretrain on NIH-style images (14 labels), then train on the hospital
images (8 categories, patient-disjoint 65/35 split) from scratch, fine-tuned from the NIH weights, or with the
NIH backbone frozen. It checks the data, not cxrtune's Keras code: PyTorch is no cxrtune dependency; it was
used because the lent GPU machine had PyTorch and no TensorFlow.

Usage: python benchmarks/synthetic_transfer_torch.py DATA.npz EPOCHS_PRETRAIN EPOCHS_TRAIN SEEDS  (20 40 3)
"""
import json, sys, time
import numpy as np, torch, torch.nn as nn, torchvision
from sklearn.metrics import roc_auc_score

dev = 'cuda' if torch.cuda.is_available() else 'cpu'
d = np.load(sys.argv[1])
EPOCHS_PRE, EPOCHS_FT, SEEDS = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])


def tensor(x):
    t = torch.tensor(x, dtype=torch.float32, device=dev)[:, None] / 255.0
    return ((t - 0.5) / 0.25).repeat(1, 3, 1, 1)


def augment(xb):
    # random shifts of up to 4 px and small brightness changes
    pad = nn.functional.pad(xb, (4, 4, 4, 4), mode='replicate')
    i, j = np.random.randint(0, 9, 2)
    xb = pad[:, :, i:i + xb.shape[2], j:j + xb.shape[3]]
    return xb * (1 + 0.1 * (torch.rand(len(xb), 1, 1, 1, device=dev) - 0.5))


def fit(model, x, y, epochs, lr, params=None, eval_fn=None, frozen=False):
    opt = torch.optim.Adam(params if params is not None else model.parameters(), lr=lr)
    loss_fn = nn.BCEWithLogitsLoss()
    n, history = len(x), []
    for epoch in range(epochs):
        model.train()
        if frozen:  # a frozen backbone runs BatchNorm on its moving statistics (Keras 3 default)
            for name, module in model.named_modules():
                if name and not name.startswith('fc'):
                    module.eval()
        perm = torch.randperm(n, device=dev)
        for k in range(0, n, 64):
            idx = perm[k:k + 64]
            opt.zero_grad()
            loss = loss_fn(model(augment(x[idx])), y[idx])
            loss.backward()
            opt.step()
        if eval_fn is not None:
            history.append(eval_fn(model))
    return history


def macro_auc(model, x, y):
    model.eval()
    with torch.no_grad():
        p = torch.sigmoid(model(x)).cpu().numpy()
    y = y.cpu().numpy()
    cols = [c for c in range(y.shape[1]) if 0 < y[:, c].sum() < len(y)]
    return float(np.mean([roc_auc_score(y[:, c], p[:, c]) for c in cols])), len(cols)


def resnet(n_out):
    return torchvision.models.resnet18(weights=None, num_classes=n_out).to(dev)


results = {}
t0 = time.time()
nih_x, nih_y = tensor(d['nih_x']), torch.tensor(d['nih_y'], dtype=torch.float32, device=dev)
for seed in range(SEEDS):
    torch.manual_seed(seed); np.random.seed(seed)
    pre = resnet(14)
    n_val = len(nih_x) // 5
    hist = fit(pre, nih_x[n_val:], nih_y[n_val:], EPOCHS_PRE, 1e-3,
               eval_fn=lambda m: macro_auc(m, nih_x[:n_val], nih_y[:n_val])[0])
    results.setdefault('nih_pretrain_val_auc', []).append(hist[-1])
    state = {k: v.clone() for k, v in pre.state_dict().items() if not k.startswith('fc.')}
    for prevalence in ('balanced', 'study'):
        x, y, patient = d[f'{prevalence}_x'], d[f'{prevalence}_y'], d[f'{prevalence}_patient']
        rng = np.random.default_rng(seed)
        val_patients = set(rng.permutation(patient.max() + 1)[: (patient.max() + 1) * 35 // 100].tolist())
        val = np.array([p in val_patients for p in patient])
        xt, yt = tensor(x[~val]), torch.tensor(y[~val], dtype=torch.float32, device=dev)
        xv, yv = tensor(x[val]), torch.tensor(y[val], dtype=torch.float32, device=dev)
        ev = lambda m: macro_auc(m, xv, yv)
        for method in ('scratch', 'pretrained_finetune', 'pretrained_frozen'):
            torch.manual_seed(100 + seed)
            model = resnet(8)
            params = None
            if method != 'scratch':
                model.load_state_dict(state, strict=False)
            if method == 'pretrained_frozen':
                for name, p in model.named_parameters():
                    p.requires_grad = name.startswith('fc.')
                params = model.fc.parameters()
            lr = 1e-3 if method != 'pretrained_finetune' else 3e-4
            hist = fit(model, xt, yt, EPOCHS_FT, lr, params=params, eval_fn=ev, frozen=method == 'pretrained_frozen')
            aucs = [h[0] for h in hist]
            key = f'{prevalence}/{method}'
            results.setdefault(key, []).append({'final': aucs[-1], 'best': max(aucs), 'labels_scored': hist[-1][1],
                                                 'first5': [round(a, 3) for a in aucs[:5]]})
            print(key, seed, f"final {aucs[-1]:.3f} best {max(aucs):.3f} scored {hist[-1][1]} "
                  f"train n={len(xt)} val n={len(xv)} t={time.time() - t0:.0f}s", flush=True)

summary = {}
for key, runs in results.items():
    if key == 'nih_pretrain_val_auc':
        summary[key] = [round(r, 3) for r in runs]
        continue
    finals = [r['final'] for r in runs]
    summary[key] = f"{np.mean(finals):.3f} +/- {np.std(finals):.3f} (best {np.mean([r['best'] for r in runs]):.3f})"
print(json.dumps(summary, indent=1))
print(json.dumps(results))
