"""Datasets: find images and captions, prepare training folders, audit them (CLIP token counts)."""
