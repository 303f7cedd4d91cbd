"""Study (issue 31): which space should a cautious reward's support vote in, and does the vote stop reward hacking?

    # frames a policy visits, with Meta-World's truth per step (coffee-button under the bench's lighting change)
    python studies/support/study_support.py collect --task coffee-button --policy expert --shift --out F.npz
    python studies/support/study_support.py collect --task coffee-button --policy <SB3 model.zip> --deterministic \
        --shift --out F.npz                      # a policy trained on a classifier's reward (bench_rl's checkpoint)
    # per episode, what a classifier's first firing is (a true success, or a lie), plain and with a support vote
    python studies/support/study_support.py score --ckpt CKPT --data RECORDED_SET --frames F.npz \
        [--support-ckpt CKPT2 --support-data SET2]          # the vote in another checkpoint's encoder features
    python studies/support/study_support.py space --ckpt CKPT --data RECORDED_SET --frames F.npz \
        --space thumb16|random-small_cnn|random-resnet10|he-resnet10|tf-resnet10|peer-resnet10 --size 96

Write-up and results: studies/support/README.md. Research code: never imported by hilreward.
"""
import argparse, json, os, sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
os.environ.setdefault("MUJOCO_GL", "egl")
import bench_rl as B


def collect(args):
    settings = B.settings_from(argparse.Namespace(), args.task)
    shift = B.TASKS.get(args.task, {}).get("shift") if args.shift else None
    env = B.make_task_env(args.task, args.seed, settings, True, 128, shift)
    if args.policy.endswith(".zip"):
        from stable_baselines3 import SAC
        model = SAC.load(args.policy, device="cpu")
        act = lambda obs: model.predict(obs["state"], deterministic=args.deterministic)[0]
    else:
        from hilreward.sim.policies import scripted_policy
        act = None
    rec = {"front": [], "wrist": [], "true": [], "t": [], "ep": []}
    for e in range(args.episodes):
        obs, _ = env.reset(seed=args.seed + e)
        pol = act or scripted_policy(env, args.policy, seed=e)
        for t in range(settings.max_steps):
            a = pol(obs)
            obs, _, term, trunc, info = env.step(a)
            rec["front"].append(obs["pixels"]["front"]); rec["wrist"].append(obs["pixels"]["wrist"])
            rec["true"].append(info["success"]); rec["t"].append(t + 1); rec["ep"].append(e)
            if trunc:
                break
    np.savez_compressed(args.out, **{k: np.asarray(v) for k, v in rec.items()})
    print("wrote", args.out, len(rec["t"]))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd")
    c = sub.add_parser("collect")
    c.add_argument("--task"); c.add_argument("--policy"); c.add_argument("--out")
    c.add_argument("--episodes", type=int, default=30); c.add_argument("--seed", type=int, default=900_000)
    c.add_argument("--shift", action="store_true"); c.add_argument("--deterministic", action="store_true")
    a = p.parse_args()
    {"collect": collect}[a.cmd](a)





def bank_for(ckpt, data_dir, cache_dir=None):
    """Offline training frames' pooled features and labels for ckpt (episodes 0-15)."""
    import torch
    from hilreward.config import DatasetConfig, TrainConfig, from_yaml
    from hilreward.data import load_frame_data
    from hilreward.models import RewardClassifier
    from hilreward.training.features import compute_features
    from hilreward.online.neighbours import pooled
    model = RewardClassifier.from_pretrained(ckpt).eval()
    cfg = from_yaml(Path(ckpt, "train_config.yaml").read_text())
    data = load_frame_data(DatasetConfig(root=str(data_dir), cameras=list(model.camera_keys)), cfg.label,
                           tuple(model.config.image_size))
    feats = compute_features(model, data)
    train = ~np.isin(data.episode_index, [16, 17, 18, 19])
    vec = pooled({k: np.asarray(v)[train] for k, v in feats.items()}, model.camera_keys)
    ep, fr = data.episode_index[train], data.frame_index[train]
    same = (ep[1:] == ep[:-1]) & (fr[1:] == fr[:-1] + 1)
    scale = float(np.median(np.linalg.norm(vec[1:][same] - vec[:-1][same], axis=1)))
    return model, vec, np.asarray(data.labels)[train], scale, ep


def score(args):
    import torch
    from hilreward.online.neighbours import pooled
    from hilreward.models import RewardClassifier
    smodel, bank, labels, scale, bank_ep = bank_for(args.support_ckpt or args.ckpt, args.support_data or args.data)
    model = RewardClassifier.from_pretrained(args.ckpt).eval()
    d = np.load(args.frames)
    frames = {"observation.images.front": d["front"], "observation.images.wrist": d["wrist"]}
    probs, vecs = [], []
    with torch.inference_mode():
        for s in range(0, len(d["t"]), 256):
            chunk = {k: v[s:s + 256] for k, v in frames.items()}
            f = model.encode(model.preprocess(chunk))
            probs.append(model.probabilities(model.head(f)).numpy())
            g = smodel.encode(smodel.preprocess(chunk))
            vecs.append(pooled({k: x.numpy() for k, x in g.items()}, smodel.camera_keys))
    p, v = np.concatenate(probs), np.concatenate(vecs)
    sq = (bank ** 2).sum(1)
    dist = np.sqrt(np.maximum((v ** 2).sum(1)[:, None] + sq[None] - 2 * v @ bank.T, 0)) / scale
    pos, neg = labels == 1, labels == 0
    d_pos, d_neg = dist[:, pos].min(1), dist[:, neg].min(1)
    k = args.k
    nn = np.argsort(dist, axis=1)[:, :k]
    share = labels[nn].mean(1)
    thr = model.threshold
    true = d["true"].astype(bool)
    out = {"threshold": thr, "scale": scale}
    # per frame summary
    fire = p >= thr
    for name, mask in (("true", true), ("false", ~true)):
        m = mask & fire
        out[f"fired_{name}"] = int(m.sum())
        if m.any():
            out[f"fired_{name}_dpos_med"] = float(np.median(d_pos[m]))
            out[f"fired_{name}_dneg_med"] = float(np.median(d_neg[m]))
            out[f"fired_{name}_share_med"] = float(np.median(share[m]))
            out[f"fired_{name}_nn1pos"] = float(np.mean(d_pos[m] < d_neg[m]))
            out[f"fired_{name}_share>=0.5"] = float(np.mean(share[m] >= 0.5))
    # per episode first firing with rules
    eps = d["ep"]
    rules = {"plain": fire, "nn1": fire & (d_pos < d_neg), f"knn{k}": fire & (share >= 0.5)}
    for rad in (2, 3, 4, 6, 8):
        rules[f"dpos<{rad}"] = fire & (d_pos <= rad)
    for name, f in rules.items():
        hacked = rewarded = silent_true = 0
        n = 0
        for e in np.unique(eps):
            idx = np.flatnonzero(eps == e)
            n += 1
            hits = idx[f[idx]]
            if len(hits):
                if true[hits[0]]:
                    rewarded += 1
                else:
                    hacked += 1
            elif true[idx].any():
                silent_true += 1
        out[f"ep_{name}"] = f"hacked {hacked}/{n}, rewarded {rewarded}, silent-on-true {silent_true}"
    print(json.dumps(out, indent=1))


def _main2():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd")
    c = sub.add_parser("collect")
    c.add_argument("--task"); c.add_argument("--policy"); c.add_argument("--out")
    c.add_argument("--episodes", type=int, default=30); c.add_argument("--seed", type=int, default=900_000)
    c.add_argument("--shift", action="store_true"); c.add_argument("--deterministic", action="store_true")
    s = sub.add_parser("score")
    s.add_argument("--ckpt"); s.add_argument("--data"); s.add_argument("--frames"); s.add_argument("--k", type=int, default=5)
    s.add_argument("--support-ckpt"); s.add_argument("--support-data")
    a = p.parse_args()
    {"collect": collect, "score": score}[a.cmd](a)


def space_fn(name: str, size: int):
    """A generic embedding of frames dict cam->(N,H,W,3) uint8 -> (N, D)."""
    import torch
    from hilreward.images import resize_uint8
    from hilreward.models.registry import build_encoder
    from hilreward.models.preprocessing import normalize
    from hilreward.online.neighbours import pooled
    if name.startswith("thumb"):
        side = int(name[5:] or 16)
        def f(frames):
            out = []
            for k in sorted(frames):
                x = resize_uint8(np.asarray(frames[k]), (side, side)).astype(np.float32)
                x = (x - x.mean(axis=(1, 2, 3), keepdims=True)) / (x.std(axis=(1, 2, 3), keepdims=True) + 1e-6)
                out.append(x.reshape(len(x), -1))
            return np.concatenate(out, 1)
        return f
    enc_name = name.split("-", 1)[1]
    torch.manual_seed(0)
    if name.startswith("peer"):
        enc = build_encoder("resnet10", pretrained=True, weights=str(B.PEER_ENCODER)).eval()
    else:
        enc = build_encoder(enc_name, pretrained=False,
                            options={"layout": "transformers"} if name.startswith("tf") else None).eval()
        if name.startswith("he") or name.startswith("tf"):
            for m in enc.modules():
                if isinstance(m, torch.nn.Conv2d):
                    torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)):
                    torch.nn.init.ones_(m.weight); torch.nn.init.zeros_(m.bias)
    def f(frames):
        out = []
        with torch.inference_mode():
            for s in range(0, len(next(iter(frames.values()))), 256):
                feats = {}
                for k in sorted(frames):
                    x = torch.from_numpy(resize_uint8(np.asarray(frames[k][s:s + 256]), (size, size))).permute(0, 3, 1, 2).float() / 255
                    feats[k] = enc(normalize(x, enc.mean, enc.std)).numpy()
                out.append(pooled(feats, sorted(frames)))
        return np.concatenate(out)
    return f


def score_space(args):
    import torch
    from hilreward.config import DatasetConfig, from_yaml
    from hilreward.data import load_frame_data
    from hilreward.models import RewardClassifier
    model = RewardClassifier.from_pretrained(args.ckpt).eval()
    cfg = from_yaml(Path(args.ckpt, "train_config.yaml").read_text())
    data = load_frame_data(DatasetConfig(root=str(args.data), cameras=list(model.camera_keys)), cfg.label, (args.size, args.size))
    train = ~np.isin(data.episode_index, [16, 17, 18, 19]) & (np.arange(len(data.episode_index)) % 2 == 0)
    emb = space_fn(args.space, args.size)
    bank = emb({k: np.asarray(v)[train] for k, v in data.images.items()})
    labels = np.asarray(data.labels)[train]
    d = np.load(args.frames)
    frames = {"observation.images.front": d["front"], "observation.images.wrist": d["wrist"]}
    with torch.inference_mode():
        p = np.concatenate([model.probabilities(model(model.preprocess({k: v[s:s + 256] for k, v in frames.items()}))).numpy()
                            for s in range(0, len(d["t"]), 256)])
    v = emb(frames)
    sq = (bank ** 2).sum(1)
    dist = np.sqrt(np.maximum((v ** 2).sum(1)[:, None] + sq[None] - 2 * v @ bank.T, 0))
    fire = p >= model.threshold
    true = d["true"].astype(bool)
    eps = d["ep"]
    out = {}
    for k in (1, 5, 11):
        nn = np.argsort(dist, axis=1)[:, :k]
        share = labels[nn].mean(1)
        f = fire & (share >= 0.5)
        hacked = rewarded = silent = 0
        for e in np.unique(eps):
            idx = np.flatnonzero(eps == e)
            hits = idx[f[idx]]
            if len(hits):
                hacked += not true[hits[0]]; rewarded += bool(true[hits[0]])
            elif true[idx].any():
                silent += 1
        out[f"knn{k}"] = f"hacked {hacked}, rewarded {rewarded}, silent-on-true {silent}"
    hacked = sum(1 for e in np.unique(eps) if (h := np.flatnonzero(fire[eps == e])).size and not true[eps == e][h[0]])
    out["plain_hacked"] = hacked
    print(args.space, json.dumps(out))


if __name__ == "__main__" and sys.argv[1] == "space":
    p = argparse.ArgumentParser()
    p.add_argument("cmd"); p.add_argument("--ckpt"); p.add_argument("--data"); p.add_argument("--frames")
    p.add_argument("--space"); p.add_argument("--size", type=int, default=96)
    score_space(p.parse_args())
    sys.exit(0)


if __name__ == "__main__":
    _main2()
