"""How hard is a synthetic data set? Trains a logistic regression on per-clip mean/std of a
64-band log-mel (librosa) on fold1_train and reports accuracy on fold1_evaluate, overall and for
seen / unseen devices. Not a test: a yardstick for tuning src/synth (a linear model should stay
well below 100 %, the unseen devices s4-s6 somewhat lower).

Usage: python3 scripts/check_synth_difficulty.py DATA_DIR   (needs librosa, scikit-learn)
"""
import sys, numpy as np, librosa, csv, os
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
root = sys.argv[1]
def load(split):
    rows = list(csv.reader(open(f"{root}/evaluation_setup/fold1_{split}.csv"), delimiter="\t"))[1:]
    X, y, d = [], [], []
    for f, lab in rows:
        x, sr = librosa.load(f"{root}/{f}", sr=None)
        m = librosa.power_to_db(librosa.feature.melspectrogram(y=x, sr=sr, n_fft=2048, hop_length=512, n_mels=64))
        X.append(np.concatenate([m.mean(1), m.std(1)])); y.append(lab); d.append(f.rsplit("-",1)[1][:-4])
    return np.array(X), np.array(y), np.array(d)
Xtr, ytr, dtr = load("train"); Xte, yte, dte = load("evaluate")
sc = StandardScaler().fit(Xtr)
for C in [0.01, 0.1, 1.0]:
    clf = LogisticRegression(C=C, max_iter=3000).fit(sc.transform(Xtr), ytr)
    p = clf.predict(sc.transform(Xte))
    print(f"C={C} train acc {clf.score(sc.transform(Xtr), ytr):.3f} test acc {(p==yte).mean():.3f}")
    for g in [["a","b","c","s1","s2","s3"],["s4","s5","s6"]]:
        mk = np.isin(dte, g); print("   ", g, f"{(p[mk]==yte[mk]).mean():.3f} n={mk.sum()}")
from sklearn.metrics import confusion_matrix
print(clf.classes_); print(confusion_matrix(yte, p, labels=clf.classes_))
