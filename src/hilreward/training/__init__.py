"""hilreward.training"""
