"""Generation grids with a trained LoRA: grids, prompts, checkpoints, gen_img jobs, contact sheets."""
