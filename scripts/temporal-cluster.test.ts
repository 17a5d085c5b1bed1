import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { expect, it } from 'vitest';
import { searchAttributesBeyondSqlLimits } from './temporal-cluster';

it("finds the service's search attributes within what SQL visibility holds, and names a type that would overflow", () => {
  expect(searchAttributesBeyondSqlLimits()).toEqual([]);
  const keywords = Array.from({ length: 11 }, (_, i) => defineSearchAttributeKey(`Keyword${i}`, SearchAttributeType.KEYWORD));
  const texts = [defineSearchAttributeKey('Notes', SearchAttributeType.TEXT)];
  expect(searchAttributesBeyondSqlLimits([...keywords, ...texts])).toEqual([{ type: SearchAttributeType.KEYWORD, wanted: 11, limit: 10 }]);
});
