"""hilreward.evaluation"""
