"""hilreward.data"""
