"""hilreward.sim"""
