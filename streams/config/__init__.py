"""The leaf layer: settings every process of the fleet needs, and the names of topics.

Nothing here imports another part of `streams` or any stage code, so the runner and a
custom `--spec` stage can load it without Pillow, numpy or torch.
"""
