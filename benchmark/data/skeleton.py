"""Joint layouts: NTU-25 (Kinect v2), NW-UCLA-20 (Kinect v1), COCO-17 (2-D pose).

Edges are the CTR-GCN graphs (``graph/ntu_rgb_d.py``, ``graph/ucla.py``) and Shap-Mix's COCO
graph (``graph/kinect.py``), stored 0-based as (child, parent) "inward" pairs. ``BONE_PAIRS``
are the feeder's bone definitions (``feeders/bone_pairs.py``), also 0-based (v1, v2):
bone[v1] = joint[v1] - joint[v2]; a self pair gives a zero bone.

``PARTS`` are Shap-Mix's five body parts in the official index order P0..P4. For NTU the
names in Shap-Mix's ``skelemix.py`` are mirror-swapped relative to the NTU joint definitions: P1
is the anatomical right arm, P2 the left arm, P3 the right leg and P4 the left leg; the sets,
not the names, are what the method uses. NW-UCLA has no official part split; ours follows the
same anatomy (trunk, arm on the P1 side, other arm, leg, other leg) so that P-k means the same
limb on both datasets.
"""
from __future__ import annotations

from dataclasses import dataclass


def _zero_based(pairs_1based):
    return tuple((a - 1, b - 1) for a, b in pairs_1based)


NTU_JOINT_NAMES = (
    "spine_base", "spine_mid", "neck", "head", "left_shoulder", "left_elbow", "left_wrist",
    "left_hand", "right_shoulder", "right_elbow", "right_wrist", "right_hand", "left_hip",
    "left_knee", "left_ankle", "left_foot", "right_hip", "right_knee", "right_ankle",
    "right_foot", "spine_shoulder", "left_hand_tip", "left_thumb", "right_hand_tip",
    "right_thumb",
)

# CTR-GCN graph/ntu_rgb_d.py, 1-based (child, parent); note the hand chains 22->23->8, 24->25->12
NTU_EDGES = _zero_based([
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
    (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
    (20, 19), (22, 23), (23, 8), (24, 25), (25, 12),
])
# CTR-GCN feeders/bone_pairs.py ntu_pairs, 1-based; (21, 21) makes joint 21's bone zero
NTU_BONE_PAIRS = _zero_based([
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
    (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
    (20, 19), (22, 23), (21, 21), (23, 8), (24, 25), (25, 12),
])
# Shap-Mix skelemix.py body parts, 0-based, official order P0..P4 (sizes 5, 6, 6, 4, 4)
NTU_PARTS = ((3, 2, 20, 1, 0), (8, 9, 10, 11, 23, 24), (4, 5, 6, 7, 21, 22),
             (16, 17, 18, 19), (12, 13, 14, 15))

UCLA_JOINT_NAMES = (
    "hip_center", "spine", "shoulder_center", "head", "left_shoulder", "left_elbow",
    "left_wrist", "left_hand", "right_shoulder", "right_elbow", "right_wrist", "right_hand",
    "left_hip", "left_knee", "left_ankle", "left_foot", "right_hip", "right_knee",
    "right_ankle", "right_foot",
)
# CTR-GCN graph/ucla.py, 1-based (child, parent)
UCLA_EDGES = _zero_based([
    (1, 2), (2, 3), (4, 3), (5, 3), (6, 5), (7, 6), (8, 7), (9, 3), (10, 9), (11, 10),
    (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19),
])
# CTR-GCN feeders/feeder_ucla.py Feeder.bone: the graph edges plus (3, 3), the root's zero bone
UCLA_BONE_PAIRS = _zero_based([
    (1, 2), (2, 3), (3, 3), (4, 3), (5, 3), (6, 5), (7, 6), (8, 7), (9, 3), (10, 9),
    (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
    (20, 19),
])
# Our mapping (no official one): same anatomy as the NTU parts, same P-index meaning
UCLA_PARTS = ((0, 1, 2, 3), (8, 9, 10, 11), (4, 5, 6, 7), (16, 17, 18, 19), (12, 13, 14, 15))

COCO_JOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
# Shap-Mix graph/kinect.py, already 0-based (child, parent)
COCO_EDGES = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 5), (12, 6), (9, 7), (7, 5),
              (10, 8), (8, 6), (5, 0), (6, 0), (1, 0), (3, 1), (2, 0), (4, 2))
COCO_BONE_PAIRS = ((0, 0),) + tuple(sorted(COCO_EDGES))
# Shap-Mix skelemix.py body_parts_k400
COCO_PARTS = ((0, 1, 2, 3, 4), (5, 7, 9), (6, 8, 10), (11, 13, 15), (12, 14, 16))


@dataclass(frozen=True)
class Layout:
    name: str
    joint_names: tuple
    edges: tuple        # 0-based (child, parent), the GCN's inward links
    bone_pairs: tuple   # 0-based (v1, v2): bone[v1] = joint[v1] - joint[v2]
    parts: tuple        # five body parts, official P0..P4 order
    center: int         # joint the official pipeline centres on

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)


LAYOUTS = {
    "ntu25": Layout("ntu25", NTU_JOINT_NAMES, NTU_EDGES, NTU_BONE_PAIRS, NTU_PARTS, center=1),
    "ucla20": Layout("ucla20", UCLA_JOINT_NAMES, UCLA_EDGES, UCLA_BONE_PAIRS, UCLA_PARTS, center=1),
    "coco17": Layout("coco17", COCO_JOINT_NAMES, COCO_EDGES, COCO_BONE_PAIRS, COCO_PARTS, center=0),
}


def get_layout(name: str) -> Layout:
    from ..errors import BenchmarkError

    if name not in LAYOUTS:
        raise BenchmarkError(f"unknown joint layout {name!r} (have: {', '.join(LAYOUTS)})")
    return LAYOUTS[name]
