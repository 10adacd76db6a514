"""worldsim.evaluate"""
