"""worldsim.diffusion"""
