"""hilreward.serving"""
